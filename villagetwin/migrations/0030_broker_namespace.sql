-- Device ids and service-account names are one namespace: the broker knows only usernames,
-- and a device named like an ingester account would have inherited its rights (issue 12).
CREATE FUNCTION broker_username_free() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'devices' THEN
        IF EXISTS (SELECT 1 FROM service_accounts WHERE username = NEW.device_id) THEN
            RAISE EXCEPTION 'device id % is a service account name', NEW.device_id
                USING ERRCODE = 'unique_violation';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM devices WHERE device_id = NEW.username) THEN
        RAISE EXCEPTION 'service account name % is a device id', NEW.username
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER devices_username_free BEFORE INSERT OR UPDATE OF device_id ON devices
    FOR EACH ROW EXECUTE FUNCTION broker_username_free();
CREATE TRIGGER service_accounts_username_free BEFORE INSERT OR UPDATE OF username
    ON service_accounts FOR EACH ROW EXECUTE FUNCTION broker_username_free();
