-- Sign-in lockouts an admin can see and lift on the dashboard (issue 14, item 6): the current
-- ones, for admins only (app_users and sign_in_blocks stay unreadable by the dashboard's
-- role); and vt_lift_lockout (migration 0060) again, now refusing to "lift" what is not
-- locked, and auditing the account or the address alone as its subject.
CREATE FUNCTION vt_lockouts()
RETURNS TABLE (kind text, subject text, since timestamptz, until timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
#variable_conflict use_column
BEGIN
    IF NOT vt_is_admin() THEN
        RAISE EXCEPTION 'vt: only an admin sees sign-in lockouts' USING ERRCODE = '42501';
    END IF;
    RETURN QUERY
        SELECT 'account'::text, u.username, u.locked_at, NULL::timestamptz
        FROM app_users u WHERE u.locked_at IS NOT NULL
        UNION ALL
        SELECT 'address'::text, b.address, min(b.at), max(b.until)
        FROM sign_in_blocks b WHERE b.until > now() AND b.lifted_at IS NULL
        GROUP BY b.address
        ORDER BY 3 DESC;
END
$$;
REVOKE EXECUTE ON FUNCTION vt_lockouts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vt_lockouts() TO vt_dashboard;

CREATE OR REPLACE FUNCTION vt_lift_lockout(p_username text, p_address text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
DECLARE
    me text := vt_user();
    lifted text[] := '{}';
BEGIN
    IF NOT vt_is_admin() THEN
        RAISE EXCEPTION 'vt: only an admin lifts a lockout' USING ERRCODE = '42501';
    END IF;
    UPDATE app_users SET locked_at = NULL, unlocked_at = now()
    WHERE username = p_username AND locked_at IS NOT NULL;
    IF FOUND THEN
        lifted := lifted || p_username;
    END IF;
    UPDATE sign_in_blocks SET lifted_at = now()
    WHERE address = p_address AND lifted_at IS NULL AND until > now();
    IF FOUND THEN
        lifted := lifted || p_address;
    END IF;
    IF cardinality(lifted) = 0 THEN
        RAISE EXCEPTION 'vt: % is not locked out',
            coalesce(p_username, p_address, 'nothing') USING ERRCODE = '22023';
    END IF;
    INSERT INTO audit_log (username, action, subject, reason)
    VALUES (me, 'lockout_lifted', array_to_string(lifted, ' '), 'admin');
END
$$;
