-- Cases (工单): 上报 reported -> 分拨 dispatched -> 处置 handled -> 办结 closed, or reopened;
-- made from resident-app incidents and from alerts. grid_code and building_id are plain
-- columns so that row-level security can later key on them.
CREATE TABLE case_counters (
    day date PRIMARY KEY,
    n   integer NOT NULL
);

-- A short number to quote on the phone: the local day and its running count, 261129-007.
CREATE FUNCTION new_case_no(at timestamptz) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    INSERT INTO case_counters AS c (day, n) VALUES ((at AT TIME ZONE 'Asia/Shanghai')::date, 1)
    ON CONFLICT (day) DO UPDATE SET n = c.n + 1
    RETURNING to_char(day, 'YYMMDD') || '-' || lpad(n::text, greatest(3, length(n::text)), '0')
$$;

CREATE TABLE cases (
    case_id      bigserial PRIMARY KEY,
    case_no      text NOT NULL UNIQUE,
    category     text NOT NULL,
    priority     text NOT NULL CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
    status       text NOT NULL DEFAULT 'reported'
                 CHECK (status IN ('reported', 'dispatched', 'handled', 'closed')),
    source       text NOT NULL CHECK (source IN ('app', 'alert', 'staff')),
    incident_id  uuid UNIQUE,
    alert_id     bigint UNIQUE REFERENCES alerts ON DELETE SET NULL,
    grid_code    text,
    building_id  text,
    unit_id      text,
    lon          double precision,
    lat          double precision,
    description  text NOT NULL,
    photo_refs   text[] NOT NULL DEFAULT '{}',
    assigned_to  text,
    feedback     text,
    reported_at  timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    dispatched_at timestamptz,
    handled_at   timestamptz,
    closed_at    timestamptz,
    escalated_to text,
    escalated_at timestamptz,
    reopened     integer NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_open ON cases (grid_code, status, due_at) WHERE status <> 'closed';
CREATE INDEX cases_assignee ON cases (assigned_to, status) WHERE status <> 'closed';
CREATE INDEX cases_overdue ON cases (due_at) WHERE status IN ('reported', 'dispatched')
    AND escalated_at IS NULL;

CREATE TABLE case_history (
    history_id  bigserial PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES cases ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,  -- reported, dispatched, handled, closed, reopened, escalated
    from_status text,
    to_status   text,
    note        text NOT NULL DEFAULT ''
);
CREATE INDEX case_history_case ON case_history (case_id, at);

-- Who works each grid: workers (optionally for some categories only) and the grid's manager,
-- to whom overdue cases escalate.
CREATE TABLE grid_staff (
    grid_code  text NOT NULL,
    username   text NOT NULL,
    duty       text NOT NULL CHECK (duty IN ('worker', 'manager')),
    categories text[] NOT NULL DEFAULT '{}',  -- empty: every category
    PRIMARY KEY (grid_code, username, duty)
);

GRANT SELECT ON cases, case_history, grid_staff TO vt_dashboard;
GRANT INSERT ON cases, case_history TO vt_dashboard;
GRANT UPDATE (status, assigned_to, feedback, due_at, dispatched_at, handled_at, closed_at,
    reopened, updated_at) ON cases TO vt_dashboard;
GRANT USAGE ON SEQUENCE cases_case_id_seq, case_history_history_id_seq TO vt_dashboard;
GRANT EXECUTE ON FUNCTION new_case_no(timestamptz) TO vt_dashboard;
