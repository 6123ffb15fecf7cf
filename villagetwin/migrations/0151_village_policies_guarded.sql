-- The second policies of migration 0150 (vt_village: what a manager limited to villages sees
-- outside the grid scope) are OR-ed with each table's vt_scope policy, and PostgreSQL may
-- evaluate vt_village first: on devices, alerts and cases it compared every row with the
-- session's whole building list (every building for an admin), which made the overview's
-- device queries 10-20x slower as the dashboard's role (bench/queries_bench.py: live
-- overview, admin x18 of the owner). Each is now guarded by the cheap question "is this a
-- manager limited to villages?" (an empty array for everyone else), asked once per query.
DROP POLICY vt_village ON devices;
CREATE POLICY vt_village ON devices FOR SELECT TO vt_dashboard
    USING (cardinality((SELECT vt_managed_villages())::text[]) > 0
           AND EXISTS (SELECT 1 FROM public.buildings b WHERE b.building_id = devices.building_id
                       AND b.village_key = ANY ((SELECT vt_managed_villages())::text[])));
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['alerts', 'cases'] LOOP
        IF EXISTS (SELECT 1 FROM pg_policy WHERE polname = 'vt_village'
                   AND polrelid = to_regclass(name)) THEN
            EXECUTE format('DROP POLICY vt_village ON %I', name);
            EXECUTE format(
                'CREATE POLICY vt_village ON %1$I FOR SELECT TO vt_dashboard USING'
                ' (cardinality((SELECT vt_managed_villages())::text[]) > 0'
                ' AND EXISTS (SELECT 1 FROM public.buildings b'
                ' WHERE b.building_id = %1$I.building_id'
                ' AND b.village_key = ANY ((SELECT vt_managed_villages())::text[])))', name);
        END IF;
    END LOOP;
END
$$;
