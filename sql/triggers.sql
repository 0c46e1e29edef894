-- fractality: triggers
-- updated_at bookkeeping and the consciousness_update notification. nodes has no BEFORE UPDATE
-- trigger on purpose (see sql/graph.sql): its updated_at is written by upsert_node and freeze.

CREATE FUNCTION fractality.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER adna_policies_touch_updated_at
    BEFORE UPDATE ON fractality.adna_policies
    FOR EACH ROW EXECUTE FUNCTION fractality.touch_updated_at();
CREATE TRIGGER configuration_store_touch_updated_at
    BEFORE UPDATE ON fractality.configuration_store
    FOR EACH ROW EXECUTE FUNCTION fractality.touch_updated_at();

-- pg_notify('consciousness_update', {node_id, node_key, tenant, atp, action}) for every insert,
-- update and delete of a node (atp: its energy now, as node_energy reads it, not the stored
-- value of an older atp_at; tenant: md5 of the tenant id's text, which a listener compares with
-- the digest of its own: the id itself is what a session sets to act as the tenant, and a
-- payload reaches every listener), while fractality.notify is on (off by default: any session of
-- the database may LISTEN, whatever its role, so a notification would carry one tenant's keys and
-- energies to every other). A bulk load turns it off for its own session or transaction with
-- SET [LOCAL] fractality.notify = off.
CREATE FUNCTION fractality.notify_consciousness_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3
AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    PERFORM pg_notify('consciousness_update',
                      json_build_object('node_id', r.id,
                                        'node_key', r.node_key,
                                        'tenant', md5(r.user_id::text),
                                        'atp', fractality.current_atp(r.atp, r.atp_at),
                                        'action', TG_OP)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER nodes_notify
    AFTER INSERT OR UPDATE OR DELETE ON fractality.nodes
    FOR EACH ROW
    WHEN (fractality.notify_enabled())
    EXECUTE FUNCTION fractality.notify_consciousness_update();
