-- Alerts and cases (issue 13, migrations 0040-0049) hold place-bound data: the same grid scope
-- as every other such table. They were created before vt_protect existed (0061), so they are
-- protected here, by grid code where the table has one, else by building.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['alerts', 'cases'] LOOP
        IF to_regclass(name) IS NULL THEN
            CONTINUE;
        ELSIF EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = 'public' AND table_name = name
                        AND column_name = 'grid_code') THEN
            PERFORM vt_protect(name::regclass, 'grid', 'grid_code');
        ELSIF EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = 'public' AND table_name = name
                        AND column_name = 'building_id') THEN
            PERFORM vt_protect(name::regclass, 'building', 'building_id');
        ELSE
            RAISE EXCEPTION 'table % has neither grid_code nor building_id: protect it by hand',
                name;
        END IF;
    END LOOP;
END
$$;
