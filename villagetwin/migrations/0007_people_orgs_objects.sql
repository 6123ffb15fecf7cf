-- 人 people, their tenancies, 组织 organisations and 物 objects. ID numbers and phones are
-- personal data: the dashboard's roles read them through masked views (a later migration).
CREATE TABLE people (
    person_id      text PRIMARY KEY,
    name           text NOT NULL,
    id_number      text,
    phone          text,
    born           date,
    role           text NOT NULL CHECK (role IN ('resident', 'tenant', 'landlord', 'visitor', 'grid_worker')),
    care_target    boolean NOT NULL DEFAULT false,
    credential_ref text UNIQUE            -- what the door readers report for this person
);

CREATE TABLE tenancies (
    tenancy_id text PRIMARY KEY,
    person_id  text NOT NULL REFERENCES people ON DELETE CASCADE,
    unit_id    text NOT NULL REFERENCES units ON DELETE CASCADE,
    start_date date NOT NULL,
    end_date   date,
    CHECK (end_date IS NULL OR end_date >= start_date)
);
CREATE INDEX tenancies_unit ON tenancies (unit_id);
CREATE INDEX tenancies_person ON tenancies (person_id);

CREATE TABLE organisations (
    org_id      text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('shop', 'workshop', 'association', 'property_manager', 'grid_team')),
    name        text NOT NULL,
    building_id text REFERENCES buildings ON DELETE SET NULL,
    unit_id     text REFERENCES units ON DELETE SET NULL
);

CREATE TABLE objects (
    object_id   text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('fire_hydrant', 'extinguisher', 'ebike_charging')),
    building_id text REFERENCES buildings ON DELETE SET NULL,
    floor       integer,
    lon         double precision NOT NULL,
    lat         double precision NOT NULL
);
