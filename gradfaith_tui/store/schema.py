"""Table definitions and the schema version. Bump SCHEMA_VERSION on any incompatible change."""

SCHEMA_VERSION = 1
DB_NAME = "audit.sqlite"
IMAGES_NAME = "images.npy"
MASKS_NAME = "masks.npy"
MAPS_DIR = "maps"

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    idx INTEGER PRIMARY KEY,          -- row in images.npy, masks.npy and every map array
    case_id TEXT NOT NULL UNIQUE,     -- path relative to the dataset root
    label INTEGER,                    -- 0 Normal, 1 Benign, 2 Malignant
    patient TEXT,
    has_mask INTEGER NOT NULL,
    shortcut INTEGER                  -- planted-shortcut truth (phantoms), NULL when unknown
);
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,        -- "<name>/seed<k>"
    name TEXT NOT NULL,               -- what --models calls it
    arch TEXT NOT NULL,               -- timm architecture
    family TEXT NOT NULL,             -- the paper architecture it stands for
    describe TEXT NOT NULL,           -- arch with constructor arguments, shown in the UI
    seed INTEGER NOT NULL,
    is_ref INTEGER NOT NULL,          -- the reference seed of its name (Consist compares against it)
    img_size INTEGER NOT NULL,
    checkpoint_hash TEXT NOT NULL,
    card TEXT NOT NULL,               -- the checkpoint card as JSON (a comma here breaks DROP COLUMN of the next)
    trained_elsewhere TEXT            -- NULL, or the other data or split --force let it past (older caches lack it)
);
CREATE TABLE IF NOT EXISTS explanations (
    expl_id INTEGER PRIMARY KEY,
    model_id TEXT NOT NULL REFERENCES models(model_id),
    method TEXT NOT NULL,
    layer TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,         -- hash of checkpoint, data fingerprint, method, layer and settings
    map_file TEXT NOT NULL,
    map_h INTEGER NOT NULL,
    map_w INTEGER NOT NULL,
    settings TEXT NOT NULL            -- tau, baseline, target rule: JSON
);
CREATE TABLE IF NOT EXISTS predictions (
    model_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    pred INTEGER NOT NULL,
    confidence REAL NOT NULL,
    p0 REAL, p1 REAL, p2 REAL,
    PRIMARY KEY (model_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metrics (
    expl_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,                       -- NULL where the metric does not apply (no mask)
    PRIMARY KEY (expl_id, name, idx)
) WITHOUT ROWID;
-- Sorting by a metric aggregates over models (MIN/MAX per case), which the primary key serves; an index on
-- value only doubled the b-tree inserts of every batch (and was slower to sort with), so older caches lose it.
DROP INDEX IF EXISTS metrics_by_value;
CREATE TABLE IF NOT EXISTS suspects (   -- shortcut evidence that crossed a documented threshold
    expl_id INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    rule TEXT NOT NULL,
    value REAL NOT NULL,
    reason TEXT NOT NULL,             -- in words, e.g. "85% of heat outside the body"
    PRIMARY KEY (expl_id, idx, rule)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS suspects_by_case ON suspects (idx);
CREATE TABLE IF NOT EXISTS sanity (      -- cascading model-parameter randomisation, per model and method
    model_id TEXT NOT NULL,
    method TEXT NOT NULL,
    stage INTEGER NOT NULL,
    randomised TEXT NOT NULL,         -- children of the timm net re-initialised so far, output first
    spearman REAL NOT NULL,           -- mean rank correlation with the trained model's maps
    n_cases INTEGER NOT NULL,
    PRIMARY KEY (model_id, method, stage)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evaluation (model_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flags (
    flag_id INTEGER PRIMARY KEY,
    idx INTEGER NOT NULL,
    category TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0,
    viewed TEXT,                      -- the map in view when flagged: 'model id (method)'; '': all
    replaces INTEGER                  -- the flag_id this row superseded, 0: none (undo brings that one back)
);
"""
