-- Importing real footprints: storeys below ground are counted apart from storeys above
-- (a "B1" in building:levels is a basement, not a one-storey building), and each imported
-- building remembers the key the import gave it, so that a re-import finds it again even
-- after a user gave it another standard address code.
ALTER TABLE buildings
    ADD COLUMN basements integer NOT NULL DEFAULT 0 CHECK (basements BETWEEN 0 AND 50),
    ADD COLUMN source_key text;
CREATE UNIQUE INDEX buildings_source_key ON buildings (source_key) WHERE source_key IS NOT NULL;
