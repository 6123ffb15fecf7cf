-- Retention of personal data (issue 14, item 11), applied by `villagetwin maintain`
-- (vt_apply_retention, owner only). Events keep their per-kind retention in the ingester.
--   audit rows: `audit` days; reveals and lockouts: `reveal_audit` days (longer)
--   sign-in attempts and ended sessions: `sign_in` days
--   a tenancy ended more than `tenancy` days ago: its person is anonymised (name, ID number,
--   phone, birth date and credential removed) unless they still have a current tenancy or are
--   a landlord; the tenancy itself stays, without a person one could name.
ALTER TABLE tenancies ADD COLUMN anonymised_at timestamptz;

CREATE FUNCTION vt_apply_retention(audit_days integer, reveal_audit_days integer,
                                   sign_in_days integer, tenancy_days integer)
RETURNS TABLE (kind text, removed bigint)
LANGUAGE plpgsql VOLATILE SET search_path = public AS $$
DECLARE
    n bigint;
BEGIN
    IF reveal_audit_days < audit_days THEN
        RAISE EXCEPTION 'retention: reveals are kept at least as long as other audit rows';
    END IF;
    DELETE FROM audit_log WHERE at < now() - make_interval(days => reveal_audit_days)
        AND action IN ('reveal_person', 'account_locked', 'address_blocked', 'lockout_lifted');
    GET DIAGNOSTICS n = ROW_COUNT;
    kind := 'audit_log (reveals)'; removed := n; RETURN NEXT;
    DELETE FROM audit_log WHERE at < now() - make_interval(days => audit_days)
        AND action NOT IN ('reveal_person', 'account_locked', 'address_blocked',
                           'lockout_lifted');
    GET DIAGNOSTICS n = ROW_COUNT;
    kind := 'audit_log (other)'; removed := n; RETURN NEXT;
    DELETE FROM sign_in_attempts WHERE at < now() - make_interval(days => sign_in_days);
    GET DIAGNOSTICS n = ROW_COUNT;
    kind := 'sign_in_attempts'; removed := n; RETURN NEXT;
    DELETE FROM app_sessions WHERE coalesce(ended_at, last_seen + idle)
        < now() - make_interval(days => sign_in_days);
    GET DIAGNOSTICS n = ROW_COUNT;
    kind := 'app_sessions'; removed := n; RETURN NEXT;
    WITH ended AS (
        UPDATE tenancies t SET anonymised_at = now()
        WHERE t.end_date < current_date - tenancy_days AND t.anonymised_at IS NULL
        RETURNING t.person_id
    ), gone AS (
        UPDATE people p SET name = '已匿名', id_number = NULL, phone = NULL, born = NULL,
                            credential_ref = NULL, anonymised_at = now()
        WHERE p.person_id IN (SELECT person_id FROM ended) AND p.anonymised_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM tenancies c WHERE c.person_id = p.person_id
                          AND (c.end_date IS NULL OR c.end_date >= current_date - tenancy_days))
          AND NOT EXISTS (SELECT 1 FROM buildings b WHERE b.landlord_id = p.person_id)
        RETURNING 1
    )
    SELECT count(*) INTO n FROM gone;
    kind := 'people anonymised'; removed := n; RETURN NEXT;
END
$$;
REVOKE EXECUTE ON FUNCTION vt_apply_retention(integer, integer, integer, integer) FROM PUBLIC;
