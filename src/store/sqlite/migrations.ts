// Versioned schema of the embedded store. Append new migrations; never edit an applied one.
import type Database from 'better-sqlite3';

interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'identity, sessions, audit',
    sql: `
      CREATE TABLE sites (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        policy TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL REFERENCES sites(id),
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        permissions TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        must_change_password INTEGER NOT NULL,
        totp_secret TEXT,
        totp_pending_secret TEXT,
        totp_last_step INTEGER,
        failed_login_count INTEGER NOT NULL DEFAULT 0,
        failed_login_window_start TEXT,
        locked_until TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        created_by TEXT,
        updated_by TEXT
      ) STRICT;
      CREATE INDEX users_site ON users(site_id);
      CREATE TABLE sessions (
        sid TEXT PRIMARY KEY,
        site_id TEXT,
        user_id TEXT,
        data TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX sessions_user ON sessions(site_id, user_id);
      CREATE INDEX sessions_expiry ON sessions(expires_at);
      CREATE TABLE audit_events (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome INTEGER NOT NULL,
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        objects TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        UNIQUE (site_id, seq)
      ) STRICT;
      CREATE INDEX audit_time ON audit_events(site_id, time);
      -- Append-only: the store itself refuses to change or delete an audit record.
      CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
      CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
    `,
  },
  {
    version: 2,
    name: 'audit: refuse REPLACE',
    // REPLACE deletes the conflicting row without firing delete triggers, so it would bypass
    // audit_no_delete: refuse any insert that collides with an existing record.
    sql: `
      CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit_events
        WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id OR (site_id = NEW.site_id AND seq = NEW.seq))
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
    `,
  },
  {
    version: 3,
    name: 'data keys, cases, materials',
    sql: `
      CREATE TABLE data_keys (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL UNIQUE,
        wrapped TEXT NOT NULL,
        kek_id TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX data_keys_kek ON data_keys(kek_id);
      CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL REFERENCES sites(id),
        label TEXT NOT NULL,
        title TEXT NOT NULL,
        clinical_question TEXT NOT NULL,
        status TEXT NOT NULL,
        patient_sealed TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        created_by TEXT,
        updated_by TEXT
      ) STRICT;
      CREATE INDEX cases_site_created ON cases(site_id, created_at);
      CREATE TABLE materials (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
        name_sealed TEXT NOT NULL,
        mime TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        progress INTEGER NOT NULL,
        width INTEGER,
        height INTEGER,
        tile_size INTEGER NOT NULL,
        overlap INTEGER NOT NULL,
        tile_format TEXT NOT NULL,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        created_by TEXT
      ) STRICT;
      CREATE INDEX materials_case ON materials(site_id, case_id);
      CREATE INDEX materials_status ON materials(status);
    `,
  },
  {
    version: 4,
    name: 'study transfers between sites',
    sql: `
      CREATE TABLE transfer_agreements (
        receiver_site_id TEXT NOT NULL REFERENCES sites(id),
        sender_site_id TEXT NOT NULL REFERENCES sites(id),
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (receiver_site_id, sender_site_id)
      ) STRICT;
      CREATE TABLE transfers (
        id TEXT PRIMARY KEY,
        from_site_id TEXT NOT NULL,
        to_site_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        title TEXT NOT NULL,
        note TEXT NOT NULL,
        status TEXT NOT NULL,
        received_case_id TEXT,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        decided_at TEXT,
        decided_by TEXT
      ) STRICT;
      CREATE INDEX transfers_to ON transfers(to_site_id, created_at);
      CREATE INDEX transfers_from ON transfers(from_site_id, created_at);
    `,
  },
  {
    version: 5,
    name: 'case chat and annotations',
    // No foreign key to cases: deleteCaseData removes these explicitly, as on MongoDB. The
    // unique (case_id, seq) keys are what keep each per-case sequence free of duplicates, and
    // (case_id, client_id) what makes a retried write idempotent.
    sql: `
      CREATE TABLE chat_messages (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        text_sealed TEXT NOT NULL,
        client_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (case_id, seq),
        UNIQUE (case_id, client_id)
      ) STRICT;
      CREATE TABLE annotations (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        material_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        geometry TEXT NOT NULL,
        properties_sealed TEXT NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (case_id, client_id)
      ) STRICT;
      CREATE INDEX annotations_material ON annotations(site_id, case_id, material_id, created_at);
      -- Each op keeps the whole state it produced, so history and catch-up need no join.
      CREATE TABLE annotation_ops (
        case_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        site_id TEXT NOT NULL,
        op TEXT NOT NULL,
        annotation_id TEXT NOT NULL,
        material_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        geometry TEXT NOT NULL,
        properties_sealed TEXT NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (case_id, seq),
        UNIQUE (annotation_id, version)
      ) STRICT;
    `,
  },
  {
    version: 6,
    name: 'radiology: DICOM series and instances, case keys, HL7 patients and documents',
    // Identifiers (UIDs, accession numbers, patient IDs) only as keyed hashes; see src/radiology/model.ts.
    sql: `
      CREATE TABLE radiology_case_keys (
        site_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (site_id, kind, key_hash)
      ) STRICT;
      CREATE INDEX radiology_case_keys_case ON radiology_case_keys(case_id);
      CREATE TABLE radiology_series (
        id TEXT PRIMARY KEY REFERENCES materials(id) ON DELETE CASCADE,
        site_id TEXT NOT NULL,
        case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
        series_key TEXT NOT NULL,
        patient_key TEXT,
        modality TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        series_number INTEGER,
        rows INTEGER NOT NULL,
        columns INTEGER NOT NULL,
        window_center REAL,
        window_width REAL,
        instance_count INTEGER NOT NULL,
        total_bytes INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (site_id, case_id, series_key)
      ) STRICT;
      CREATE INDEX radiology_series_patient ON radiology_series(site_id, patient_key);
      CREATE TABLE radiology_instances (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        series_id TEXT NOT NULL REFERENCES radiology_series(id) ON DELETE CASCADE,
        sop_key TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        transfer_syntax_uid TEXT NOT NULL,
        instance_number INTEGER,
        slice_position REAL,
        rows INTEGER NOT NULL,
        columns INTEGER NOT NULL,
        frames INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (series_id, sop_key)
      ) STRICT;
      CREATE TABLE radiology_patients (
        site_id TEXT NOT NULL,
        patient_key TEXT NOT NULL,
        patient_sealed TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (site_id, patient_key)
      ) STRICT;
      CREATE TABLE radiology_documents (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        message_key TEXT NOT NULL,
        content_sealed TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (case_id, message_key)
      ) STRICT;
    `,
  },
  {
    version: 7,
    name: 'audit search indexes',
    // Audit search (GET /api/admin/audit) pages newest first by (time, seq) with a keyset
    // cursor; each filter has an index ending in (time, seq) so a page is an index range scan
    // however deep it is (docs/benchmarks.md). Objects live in a JSON array, so a side table,
    // filled by a trigger in the inserting transaction, indexes them. It is an index, not
    // evidence: the hash chain in audit_events stays the record, and the side table is
    // append-only as well.
    sql: `
      DROP INDEX audit_time;
      CREATE INDEX audit_site_time ON audit_events(site_id, time, seq);
      CREATE INDEX audit_site_type ON audit_events(site_id, type, time, seq);
      CREATE INDEX audit_site_actor ON audit_events(site_id, json_extract(actor, '$.userId'), time, seq);
      CREATE INDEX audit_site_ip ON audit_events(site_id, json_extract(actor, '$.ip'), time, seq);
      CREATE INDEX audit_site_outcome ON audit_events(site_id, outcome, time, seq);
      CREATE TABLE audit_object_refs (
        site_id TEXT NOT NULL,
        object_type TEXT NOT NULL,
        object_id TEXT NOT NULL,
        time TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (site_id, object_type, object_id, time, seq)
      ) WITHOUT ROWID, STRICT;
      CREATE INDEX audit_object_refs_type ON audit_object_refs(site_id, object_type, time, seq);
      INSERT OR IGNORE INTO audit_object_refs (site_id, object_type, object_id, time, seq)
        SELECT e.site_id, json_extract(o.value, '$.type'), json_extract(o.value, '$.id'), e.time, e.seq
        FROM audit_events e, json_each(e.objects) o;
      CREATE TRIGGER audit_object_refs_fill AFTER INSERT ON audit_events
        BEGIN
          INSERT OR IGNORE INTO audit_object_refs (site_id, object_type, object_id, time, seq)
            SELECT NEW.site_id, json_extract(value, '$.type'), json_extract(value, '$.id'), NEW.time, NEW.seq
            FROM json_each(NEW.objects);
        END;
      CREATE TRIGGER audit_object_refs_no_update BEFORE UPDATE ON audit_object_refs
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
      CREATE TRIGGER audit_object_refs_no_delete BEFORE DELETE ON audit_object_refs
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
    `,
  },
  {
    version: 8,
    name: 'patient video follow-ups and consent records',
    // Only the invite token's hash is stored; the contact label is sealed under the case key.
    // A follow-up goes with its case; consent records go with their follow-up (the audit trail
    // keeps the consent event itself).
    sql: `
      CREATE TABLE follow_ups (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
        host_user_id TEXT NOT NULL,
        colleagues TEXT NOT NULL,
        contact_label_sealed TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL,
        verification TEXT,
        token_hash TEXT NOT NULL,
        state TEXT NOT NULL,
        binding_id TEXT,
        bound INTEGER NOT NULL,
        device_check TEXT,
        waiting_since TEXT,
        verified_at TEXT,
        failed_verifications INTEGER NOT NULL,
        messages TEXT NOT NULL,
        invite_sent_at TEXT,
        consented_at TEXT,
        admitted_at TEXT,
        ended_at TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX follow_ups_site_end ON follow_ups(site_id, ends_at);
      CREATE INDEX follow_ups_case ON follow_ups(site_id, case_id);
      CREATE TABLE follow_up_consents (
        id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        follow_up_id TEXT NOT NULL REFERENCES follow_ups(id) ON DELETE CASCADE,
        text_version TEXT NOT NULL,
        text_sha256 TEXT NOT NULL,
        given_at TEXT NOT NULL,
        ip TEXT,
        user_agent TEXT
      ) STRICT;
      CREATE INDEX follow_up_consents_follow_up ON follow_up_consents(follow_up_id);
    `,
  },
  {
    version: 9,
    name: 'annotations on a slice of a DICOM stack',
    // NULL for every existing annotation: slides and images have no slice.
    sql: `
      ALTER TABLE annotations ADD COLUMN slice INTEGER;
      ALTER TABLE annotation_ops ADD COLUMN slice INTEGER;
    `,
  },
  {
    version: 10,
    name: 'audit search: action index',
    // An action filter alone (e.g. every delete) matched nothing fast only by scanning the site's
    // whole trail (1.4 s at 1.2 M records, docs/benchmarks.md); with its own index it is a range.
    sql: `CREATE INDEX audit_site_action ON audit_events(site_id, action, time, seq);`,
  },
];

export function migrate(db: Database.Database): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`);
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
  );
  const latestKnown = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  const newest = Math.max(0, ...applied);
  if (newest > latestKnown) {
    throw new Error(`database schema version ${newest} is newer than this server (${latestKnown}); upgrade the server`);
  }
  let count = 0;
  for (const m of MIGRATIONS) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        new Date().toISOString(),
      );
    })();
    count++;
  }
  return count;
}
