-- fractality: triggers
-- updated_at bookkeeping and the consciousness_update notification.

CREATE FUNCTION fractality.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Content changes bump updated_at; energy writes (atp, atp_at) do not fire this trigger at all.
CREATE TRIGGER nodes_touch_updated_at
    BEFORE UPDATE OF node_key, label, type, metadata, energy ON fractality.nodes
    FOR EACH ROW EXECUTE FUNCTION fractality.touch_updated_at();
CREATE TRIGGER adna_policies_touch_updated_at
    BEFORE UPDATE ON fractality.adna_policies
    FOR EACH ROW EXECUTE FUNCTION fractality.touch_updated_at();
CREATE TRIGGER configuration_store_touch_updated_at
    BEFORE UPDATE ON fractality.configuration_store
    FOR EACH ROW EXECUTE FUNCTION fractality.touch_updated_at();

-- nodes.search: the full text of label and metadata->>'description', computed on insert and on
-- updates of those columns only, so energy writes (atp, atp_at) stay cheap HOT updates.
CREATE FUNCTION fractality.nodes_search() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.search := to_tsvector('english'::regconfig,
                              coalesce(NEW.label, '') || ' ' || coalesce(NEW.metadata ->> 'description', ''));
    RETURN NEW;
END
$$;

CREATE TRIGGER nodes_search
    BEFORE INSERT OR UPDATE OF label, metadata, search ON fractality.nodes
    FOR EACH ROW EXECUTE FUNCTION fractality.nodes_search();

-- pg_notify('consciousness_update', {node_id, node_key, user_id, atp, action}) for every insert,
-- update and delete of a node. A bulk load turns it off for its own session or transaction with
-- SET [LOCAL] fractality.notify = off.
CREATE FUNCTION fractality.notify_consciousness_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
                                        'user_id', r.user_id,
                                        'atp', r.atp,
                                        'action', TG_OP)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER nodes_notify
    AFTER INSERT OR UPDATE OR DELETE ON fractality.nodes
    FOR EACH ROW
    WHEN (fractality.notify_enabled())
    EXECUTE FUNCTION fractality.notify_consciousness_update();
