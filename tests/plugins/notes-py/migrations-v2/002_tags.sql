-- Version 1.1.0 adds tags; only this file runs on an update from 1.0.0.
CREATE TABLE tags (
    note_id bigint NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    tag text NOT NULL,
    PRIMARY KEY (note_id, tag)
);
