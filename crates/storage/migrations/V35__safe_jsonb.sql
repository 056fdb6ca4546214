-- Event content, unsigned data and PDUs are stored as JSON text and cast to `jsonb` where a
-- query looks inside them. PostgreSQL refuses some JSON in `jsonb` — the escape `\u0000`
-- (NUL), lone surrogates — so one such row would make every query that casts it fail. The
-- gateway refuses NUL at the edge, but no stored row may ever break a read: queries cast
-- with `trellis_jsonb`, which reads what `jsonb` can hold, replaces the NUL escape with
-- U+FFFD otherwise, and gives NULL for text that is no JSON `jsonb` accepts.

-- The slow path, for text holding a `\u` escape: a failed cast is caught (a subtransaction,
-- so only text that may need it comes here).
CREATE FUNCTION trellis_jsonb_slow(t TEXT) RETURNS JSONB
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    BEGIN
        RETURN t::jsonb;
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    -- `\u0000` after an even number of backslashes is the escape (`\\u0000` is text).
    RETURN regexp_replace(t, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g')::jsonb;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

CREATE FUNCTION trellis_jsonb(t TEXT) RETURNS JSONB
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(t, '\u') = 0 THEN t::jsonb ELSE trellis_jsonb_slow(t) END
$$;
