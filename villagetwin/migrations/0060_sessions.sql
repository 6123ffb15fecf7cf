-- Who a dashboard session is, known by the database (issue 14, item 2).
--
-- Sign-in happens in the database: vt_sign_in() checks the password against a bcrypt hash
-- (pgcrypto) that only it (SECURITY DEFINER, owner's rights) can read, throttles failures per
-- account and per address, and returns a random session token. Only the token's SHA-256 is
-- stored. Every later statement of the dashboard carries the token in the setting vt.session;
-- vt_session() finds the session from it and refuses an unknown, ended, idle or disabled one.
-- A client can set vt.session to anything, but without a live token it is nobody: setting
-- vt.user (the old way) no longer means anything.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- Tunables of access control, one row. `villagetwin migrate` writes them from the settings
-- (VT_ACCESS__*); the dashboard's role cannot read or change them.
CREATE TABLE access_settings (
    id                      boolean PRIMARY KEY DEFAULT true CHECK (id),
    reveals_per_hour        integer NOT NULL DEFAULT 10 CHECK (reveals_per_hour >= 1),
    reveal_reason_min_chars integer NOT NULL DEFAULT 10 CHECK (reveal_reason_min_chars >= 4),
    sign_in_window          interval NOT NULL DEFAULT '15 minutes',
    account_failures_max    integer NOT NULL DEFAULT 5 CHECK (account_failures_max >= 1),
    address_failures_max    integer NOT NULL DEFAULT 20 CHECK (address_failures_max >= 1),
    address_lockout         interval NOT NULL DEFAULT '15 minutes',
    session_idle_max        interval NOT NULL DEFAULT '30 minutes',
    password_min_length     integer NOT NULL DEFAULT 12 CHECK (password_min_length >= 8)
);
INSERT INTO access_settings DEFAULT VALUES;

ALTER TABLE app_users ADD COLUMN locked_at timestamptz;    -- set by too many failures
ALTER TABLE app_users ADD COLUMN unlocked_at timestamptz;  -- an admin lifted the lock
ALTER TABLE app_users ALTER COLUMN password_hash DROP NOT NULL;  -- NULL: must be reset

CREATE TABLE sign_in_attempts (
    at       timestamptz NOT NULL DEFAULT now(),
    username text NOT NULL,
    address  text NOT NULL,
    outcome  text NOT NULL  -- ok, wrong_credentials, account_locked, address_blocked, reset_required
);
CREATE INDEX sign_in_attempts_user ON sign_in_attempts (username, at DESC);
CREATE INDEX sign_in_attempts_address ON sign_in_attempts (address, at DESC);

CREATE TABLE sign_in_blocks (
    address   text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    until     timestamptz NOT NULL,
    lifted_at timestamptz
);
CREATE INDEX sign_in_blocks_address ON sign_in_blocks (address, until DESC);

CREATE TABLE app_sessions (
    token_hash bytea PRIMARY KEY,
    username   text NOT NULL REFERENCES app_users ON DELETE CASCADE,
    address    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    idle       interval NOT NULL,
    ended_at   timestamptz
);

-- The audit log gets the address and a reason category; failed sign-ins have no reason of
-- their own, so the length check applies to reveals only (they are checked in reveal_person).
ALTER TABLE audit_log ADD COLUMN address text;
ALTER TABLE audit_log ADD COLUMN category text;
ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_reason_check;
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_user ON audit_log (username, action, at DESC);

-- Set or reset a password (owner only: `villagetwin users add`). bcrypt, cost 10.
CREATE FUNCTION vt_set_password(p_username text, p_password text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    shortest integer := (SELECT password_min_length FROM access_settings);
BEGIN
    IF char_length(coalesce(p_password, '')) < shortest THEN
        RAISE EXCEPTION 'password too short: at least % characters', shortest
            USING ERRCODE = '22023';
    END IF;
    UPDATE app_users SET password_hash = crypt(p_password, gen_salt('bf', 10)),
                         locked_at = NULL, unlocked_at = now()
    WHERE username = p_username;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no user %', p_username USING ERRCODE = '22023';
    END IF;
END
$$;

-- Existing argon2 hashes cannot be checked by the database: those users must be reset.
UPDATE app_users SET password_hash = NULL WHERE password_hash NOT LIKE '$2%';

CREATE FUNCTION vt_sign_in(p_username text, p_password text, p_address text, p_idle interval)
RETURNS TABLE (token text, refusal text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    s access_settings;
    u app_users;
    who text := left(trim(coalesce(p_username, '')), 200);
    addr text := left(coalesce(nullif(trim(p_address), ''), 'unknown'), 200);
    failures integer;
    t text;
    outcome text;
BEGIN
    SELECT * INTO s FROM access_settings;
    SELECT * INTO u FROM app_users WHERE username = who;
    IF EXISTS (SELECT 1 FROM sign_in_blocks b WHERE b.address = addr AND b.until > now()
               AND b.lifted_at IS NULL) THEN
        outcome := 'address_blocked';
    ELSIF u.username IS NOT NULL AND u.locked_at IS NOT NULL THEN
        outcome := 'account_locked';
    ELSIF u.username IS NULL OR u.disabled_at IS NOT NULL OR u.password_hash IS NULL THEN
        -- the same bcrypt work as for a real user: no timing hint
        PERFORM crypt(coalesce(p_password, ''), '$2a$10$abcdefghijklmnopqrstuu');
        outcome := CASE WHEN u.username IS NOT NULL AND u.password_hash IS NULL
                        AND u.disabled_at IS NULL THEN 'reset_required'
                        ELSE 'wrong_credentials' END;
    ELSIF crypt(coalesce(p_password, ''), u.password_hash) <> u.password_hash THEN
        outcome := 'wrong_credentials';
    ELSE
        outcome := 'ok';
    END IF;

    INSERT INTO sign_in_attempts (username, address, outcome) VALUES (who, addr, outcome);
    IF outcome <> 'ok' THEN
        INSERT INTO audit_log (username, action, subject, reason, address)
        VALUES (who, 'sign_in_failed', who, outcome, addr);
        IF outcome = 'wrong_credentials' AND u.username IS NOT NULL THEN
            SELECT count(*) INTO failures FROM sign_in_attempts a
            WHERE a.username = who AND a.outcome = 'wrong_credentials'
              AND a.at > greatest(now() - s.sign_in_window, coalesce(u.unlocked_at, '-infinity'),
                                  coalesce((SELECT max(o.at) FROM sign_in_attempts o
                                            WHERE o.username = who AND o.outcome = 'ok'),
                                           '-infinity'));
            IF failures >= s.account_failures_max THEN
                UPDATE app_users SET locked_at = now() WHERE username = who;
                INSERT INTO audit_log (username, action, subject, reason, address)
                VALUES (who, 'account_locked', who,
                        failures || ' wrong passwords within ' || s.sign_in_window, addr);
            END IF;
        END IF;
        SELECT count(*) INTO failures FROM sign_in_attempts a
        WHERE a.address = addr AND a.outcome <> 'ok' AND a.at > now() - s.sign_in_window
          AND a.at > coalesce((SELECT max(b.lifted_at) FROM sign_in_blocks b
                               WHERE b.address = addr), '-infinity');
        IF failures >= s.address_failures_max AND outcome <> 'address_blocked' THEN
            INSERT INTO sign_in_blocks (address, until) VALUES (addr, now() + s.address_lockout);
            INSERT INTO audit_log (username, action, subject, reason, address)
            VALUES (who, 'address_blocked', addr,
                    failures || ' failed sign-ins within ' || s.sign_in_window, addr);
        END IF;
        RETURN QUERY SELECT NULL::text, outcome;
        RETURN;
    END IF;
    t := encode(gen_random_bytes(32), 'hex');
    INSERT INTO app_sessions (token_hash, username, address, idle)
    VALUES (digest(t, 'sha256'), who, addr, least(coalesce(p_idle, s.session_idle_max),
                                                   s.session_idle_max));
    INSERT INTO audit_log (username, action, subject, reason, address)
    VALUES (who, 'sign_in', who, 'ok', addr);
    RETURN QUERY SELECT t, NULL::text;
END
$$;

-- The signed-in user of this connection, from the token in vt.session; raises when there is
-- none, it is unknown or ended, idle past its timeout, or its user is disabled or locked.
CREATE FUNCTION vt_session(OUT username text, OUT role text, OUT grids text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    token text := nullif(current_setting('vt.session', true), '');
    found record;
BEGIN
    IF token IS NULL THEN
        RAISE EXCEPTION 'vt: no signed-in session on this connection (set vt.session)'
            USING ERRCODE = '28000';
    END IF;
    SELECT s.*, u.role AS user_role, u.grids AS user_grids, u.disabled_at, u.locked_at
    INTO found
    FROM app_sessions s JOIN app_users u USING (username)
    WHERE s.token_hash = digest(token, 'sha256');
    IF found.username IS NULL OR found.ended_at IS NOT NULL THEN
        RAISE EXCEPTION 'vt: unknown or ended session: sign in again' USING ERRCODE = '28000';
    END IF;
    IF found.last_seen + found.idle < now() THEN
        RAISE EXCEPTION 'vt: session timed out (idle since %): sign in again', found.last_seen
            USING ERRCODE = '28000';
    END IF;
    IF found.disabled_at IS NOT NULL OR found.locked_at IS NOT NULL THEN
        RAISE EXCEPTION 'vt: user % is disabled or locked', found.username
            USING ERRCODE = '28000';
    END IF;
    username := found.username;
    role := found.user_role;
    grids := found.user_grids;
END
$$;

-- A user action: the session's idle clock starts again (only for a live session).
CREATE FUNCTION vt_session_touch() RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := (vt_session()).username;
BEGIN
    UPDATE app_sessions SET last_seen = now()
    WHERE token_hash = digest(current_setting('vt.session'), 'sha256');
    RETURN me;
END
$$;

CREATE FUNCTION vt_sign_out() RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
    UPDATE app_sessions SET ended_at = now()
    WHERE token_hash = digest(coalesce(current_setting('vt.session', true), ''), 'sha256')
      AND ended_at IS NULL
$$;

CREATE FUNCTION vt_user() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS $$ SELECT (vt_session()).username $$;
CREATE FUNCTION vt_role() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS $$ SELECT (vt_session()).role $$;
CREATE FUNCTION vt_sees_all() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS $$ SELECT (vt_session()).role IN ('admin', 'manager') $$;
CREATE FUNCTION vt_is_admin() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS $$ SELECT (vt_session()).role = 'admin' $$;
CREATE FUNCTION vt_my_grids() RETURNS text[] LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public AS $$ SELECT (vt_session()).grids $$;
-- The buildings in the session's grids (every building for admins and managers; the
-- policies ask vt_sees_all() first, so they compute this for inspectors only).
CREATE FUNCTION vt_my_buildings() RETURNS text[] LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public AS $$
DECLARE
    s record := vt_session();
BEGIN
    IF s.role IN ('admin', 'manager') THEN
        RETURN (SELECT coalesce(array_agg(building_id), '{}') FROM buildings);
    END IF;
    RETURN (SELECT coalesce(array_agg(building_id), '{}') FROM buildings
            WHERE grid_code = ANY (s.grids));
END
$$;

-- An admin lifts a lockout (account or address); audited.
CREATE FUNCTION vt_lift_lockout(p_username text, p_address text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
BEGIN
    IF NOT vt_is_admin() THEN
        RAISE EXCEPTION 'vt: only an admin lifts a lockout' USING ERRCODE = '42501';
    END IF;
    UPDATE app_users SET locked_at = NULL, unlocked_at = now() WHERE username = p_username;
    UPDATE sign_in_blocks SET lifted_at = now() WHERE address = p_address AND lifted_at IS NULL;
    INSERT INTO audit_log (username, action, subject, reason)
    VALUES (me, 'lockout_lifted', coalesce(p_username, '') || ' ' || coalesce(p_address, ''),
            'admin');
END
$$;

REVOKE EXECUTE ON FUNCTION vt_set_password(text, text), vt_sign_in(text, text, text, interval),
    vt_session(), vt_session_touch(), vt_sign_out(), vt_user(), vt_role(), vt_sees_all(),
    vt_is_admin(), vt_my_grids(), vt_my_buildings(), vt_lift_lockout(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vt_sign_in(text, text, text, interval), vt_session(),
    vt_session_touch(), vt_sign_out(), vt_user(), vt_role(), vt_sees_all(), vt_is_admin(),
    vt_my_grids(), vt_my_buildings(), vt_lift_lockout(text, text) TO vt_dashboard;
-- Password hashes: only vt_sign_in reads them.
REVOKE ALL ON app_users FROM vt_dashboard;
