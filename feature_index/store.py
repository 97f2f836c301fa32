"""Labels and named lists of features, in one SQLite file per index folder (``store.sqlite``).

SQLite in WAL mode with ``synchronous=FULL``: several processes (two app sessions, the CLI) can write
at once (writers queue on a 30 s busy timeout), readers never block writers, and a committed label
survives a crash or power loss. Every write is one short ``BEGIN IMMEDIATE`` transaction. Each
thread gets its own connection, so one :class:`FeatureStore` can be shared by the app's sessions.

Nothing is overwritten silently: every label change (and deletion) is also appended to
``label_history``; importing a list merges into an existing list of the same name and never
removes features from it.

Lists are exported as Neuronpedia-style JSON::

    {"name": ..., "description": ..., "modelId": ..., "layer": ..., "sae_fingerprint": ...,
     "features": [{"modelId": ..., "layer": ..., "index": "123", "description": ..., "label": ...}]}

Import accepts that shape (``features`` or ``neurons``; ``index`` as an int or a string).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

from feature_index.layout import check_fingerprint
from itd_core.errors import ItdError

STORE_FILE = "store.sqlite"
SCHEMA_VERSION = 1
EXPORT_FORMAT = "neuronpedia-list"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels(
    feature INTEGER PRIMARY KEY, label TEXT NOT NULL, author TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS label_history(
    id INTEGER PRIMARY KEY AUTOINCREMENT, feature INTEGER NOT NULL, label TEXT, author TEXT, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS label_history_feature ON label_history(feature);
CREATE TABLE IF NOT EXISTS lists(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS list_items(
    list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE, feature INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '', added REAL NOT NULL, PRIMARY KEY(list_id, feature));
"""


class Label(BaseModel):
    feature: int
    label: str | None
    author: str | None = None
    at: float


class ListItem(BaseModel):
    feature: int
    description: str = ""


class FeatureList(BaseModel):
    name: str
    description: str = ""
    items: list[ListItem] = Field(default_factory=list)

    @property
    def features(self) -> list[int]:
        return [item.feature for item in self.items]


class FeatureStore:
    """Labels and lists of one SAE's features. ``n_latents`` bounds the valid feature ids."""

    def __init__(self, path: str | Path, fingerprint: str, n_latents: int, *, model_id: str = "", layer: str = "",
                 read_only: bool | None = None):
        """``read_only`` None: read-only when the store's folder or file cannot be written (a read-only mount), so that
        labels can still be read there."""
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.n_latents = n_latents
        self.model_id = model_id
        self.layer = layer
        self._local = threading.local()
        if read_only is None:
            read_only = self.path.exists() and not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK))
        self.read_only = read_only
        if read_only:
            rows = self._read("SELECT value FROM meta WHERE key='fingerprint'")
            if rows:
                check_fingerprint(rows[0][0], fingerprint, "the label store", self.path.parent)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as db:
            # one statement at a time: executescript() would COMMIT the transaction
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES('fingerprint', ?), ('n_latents', ?), ('schema', ?)", (fingerprint, str(n_latents), str(SCHEMA_VERSION)))
            else:
                check_fingerprint(row[0], fingerprint, "the label store", self.path.parent)

    # --- connections ------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None and self.read_only:
            connection = self._read_only_connection()
            self._local.connection = connection
        if connection is None:
            try:
                connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                connection.execute("PRAGMA busy_timeout=30000")
                mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise ItdError(f"{self.path}: SQLite could not switch to WAL mode (got {mode!r}); is the folder on a network drive?")
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as error:
                raise ItdError(f"cannot open the label store {self.path}: {error} (if the file is damaged, move it away; labels are only in this file)") from None
            self._local.connection = connection
        return connection

    def _read_only_connection(self) -> sqlite3.Connection:
        """Read-only, with the write-ahead log if SQLite can share it here, else as the file stands (``immutable``: no
        journal or shared-memory file, which a read-only folder cannot hold)."""
        error = None
        for options in ("mode=ro", "mode=ro&immutable=1"):
            try:
                connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?{options}", uri=True, isolation_level=None)
                connection.execute("SELECT 1 FROM meta LIMIT 1")
                return connection
            except sqlite3.DatabaseError as failure:
                error = failure
        raise ItdError(f"cannot read the label store {self.path} (opened read-only): {error}")

    @contextmanager
    def _write(self):
        """One ``BEGIN IMMEDIATE`` transaction: committed as a whole, or rolled back (SQLite errors become ItdErrors)."""
        if self.read_only:
            raise ItdError(f"the label store {self.path} is read-only (a read-only folder or mount): labels and lists can be read, not changed")
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as error:
            raise ItdError(f"the label store {self.path} is busy or damaged: {error}") from None
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException as error:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(error, sqlite3.DatabaseError):
                raise ItdError(f"writing to the label store {self.path} failed, nothing was changed: {error}") from None
            raise

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as error:
            raise ItdError(f"cannot read the label store {self.path}: {error}") from None

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def check_feature(self, feature) -> int:
        try:
            value = int(feature)
        except (TypeError, ValueError):
            raise ItdError(f"feature id {feature!r} is not an integer") from None
        if isinstance(feature, float) and feature != value:
            raise ItdError(f"feature id {feature!r} is not an integer")
        if not 0 <= value < self.n_latents:
            raise ItdError(f"unknown feature {value}: this SAE has features 0..{self.n_latents - 1}")
        return value

    # --- labels -----------------------------------------------------------------------------
    def set_label(self, feature: int, label: str, author: str | None = None) -> None:
        """Label a feature (an empty label deletes it). The previous label stays in the history."""
        feature = self.check_feature(feature)
        label = str(label).strip()
        if not label:
            return self.delete_label(feature, author)
        now = time.time()
        with self._write() as db:
            db.execute("INSERT INTO labels VALUES(?, ?, ?, ?) ON CONFLICT(feature) DO UPDATE SET label=excluded.label, author=excluded.author, updated=excluded.updated",
                       (feature, label, author, now))
            db.execute("INSERT INTO label_history(feature, label, author, at) VALUES(?, ?, ?, ?)", (feature, label, author, now))

    def delete_label(self, feature: int, author: str | None = None) -> None:
        feature = self.check_feature(feature)
        with self._write() as db:
            db.execute("DELETE FROM labels WHERE feature=?", (feature,))
            db.execute("INSERT INTO label_history(feature, label, author, at) VALUES(?, NULL, ?, ?)", (feature, author, time.time()))

    def label(self, feature: int) -> str | None:
        feature = self.check_feature(feature)
        rows = self._read("SELECT label FROM labels WHERE feature=?", (feature,))
        return rows[0][0] if rows else None

    def labels(self, features: Iterable[int] | None = None) -> dict[int, str]:
        """All labels, or those of ``features``."""
        if features is None:
            return dict(self._read("SELECT feature, label FROM labels ORDER BY feature"))
        wanted = [self.check_feature(f) for f in features]
        out: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            out.update(self._read(f"SELECT feature, label FROM labels WHERE feature IN ({','.join('?' * len(chunk))})", tuple(chunk)))
        return out

    def label_history(self, feature: int) -> list[Label]:
        feature = self.check_feature(feature)
        return [Label(feature=feature, label=label, author=author, at=at)
                for label, author, at in self._read("SELECT label, author, at FROM label_history WHERE feature=? ORDER BY id", (feature,))]

    def search_labels(self, query: str, limit: int = 100) -> list[tuple[int, str]]:
        """Features whose label contains ``query`` (case-insensitive), exact matches first."""
        query = query.strip()
        if not query:
            return []
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._read("SELECT feature, label FROM labels WHERE label LIKE ? ESCAPE '\\' "
                          "ORDER BY (lower(label) = lower(?)) DESC, length(label), feature LIMIT ?", (pattern, query, int(limit)))
        return [(int(f), label) for f, label in rows]

    # --- lists ------------------------------------------------------------------------------
    def create_list(self, name: str, description: str = "", *, exist_ok: bool = False) -> None:
        name = _check_name(name)
        now = time.time()
        with self._write() as db:
            if db.execute("SELECT 1 FROM lists WHERE name=?", (name,)).fetchone():
                if exist_ok:
                    return
                raise ItdError(f"a list named {name!r} already exists")
            db.execute("INSERT INTO lists(name, description, created, updated) VALUES(?, ?, ?, ?)", (name, description, now, now))

    def add_to_list(self, name: str, features: Iterable[int], description: str = "", *, create: bool = True) -> None:
        """Add features (keeping the description of ones already there unless a new one is given)."""
        name = _check_name(name)
        checked = [self.check_feature(f) for f in features]
        now = time.time()
        with self._write() as db:
            list_id = self._list_id(db, name, create=create, now=now)
            db.executemany("INSERT INTO list_items VALUES(?, ?, ?, ?) ON CONFLICT(list_id, feature) DO UPDATE SET "
                           "description=CASE WHEN excluded.description != '' THEN excluded.description ELSE list_items.description END",
                           [(list_id, f, description, now) for f in checked])
            db.execute("UPDATE lists SET updated=? WHERE id=?", (now, list_id))

    def remove_from_list(self, name: str, features: Iterable[int]) -> None:
        checked = [self.check_feature(f) for f in features]
        with self._write() as db:
            list_id = self._list_id(db, _check_name(name), create=False)
            db.executemany("DELETE FROM list_items WHERE list_id=? AND feature=?", [(list_id, f) for f in checked])
            db.execute("UPDATE lists SET updated=? WHERE id=?", (time.time(), list_id))

    def delete_list(self, name: str) -> None:
        with self._write() as db:
            list_id = self._list_id(db, _check_name(name), create=False)
            db.execute("DELETE FROM list_items WHERE list_id=?", (list_id,))
            db.execute("DELETE FROM lists WHERE id=?", (list_id,))

    def rename_list(self, name: str, new_name: str) -> None:
        new_name = _check_name(new_name)
        with self._write() as db:
            list_id = self._list_id(db, _check_name(name), create=False)
            if db.execute("SELECT 1 FROM lists WHERE name=?", (new_name,)).fetchone():
                raise ItdError(f"a list named {new_name!r} already exists")
            db.execute("UPDATE lists SET name=?, updated=? WHERE id=?", (new_name, time.time(), list_id))

    def list_names(self) -> list[str]:
        return [name for (name,) in self._read("SELECT name FROM lists ORDER BY name")]

    def get_list(self, name: str) -> FeatureList:
        name = _check_name(name)
        rows = self._read("SELECT id, description FROM lists WHERE name=?", (name,))
        if not rows:
            raise ItdError(f"no list named {name!r} (lists: {', '.join(self.list_names()) or 'none'})")
        list_id, description = rows[0]
        items = [ListItem(feature=f, description=d) for f, d in
                 self._read("SELECT feature, description FROM list_items WHERE list_id=? ORDER BY added, feature", (list_id,))]
        return FeatureList(name=name, description=description, items=items)

    def _list_id(self, db, name: str, *, create: bool, now: float | None = None) -> int:
        row = db.execute("SELECT id FROM lists WHERE name=?", (name,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            raise ItdError(f"no list named {name!r}")
        now = now or time.time()
        return int(db.execute("INSERT INTO lists(name, description, created, updated) VALUES(?, '', ?, ?)", (name, now, now)).lastrowid)

    # --- export / import --------------------------------------------------------------------
    def source_id(self) -> str:
        return f"{self.layer or 'layer'}/itd-sae-{self.fingerprint[:12]}"

    def export_list(self, name: str) -> dict:
        """A Neuronpedia-style JSON document of a list (labels included)."""
        feature_list = self.get_list(name)
        labels = self.labels(feature_list.features)
        source = self.source_id()
        return {
            "format": EXPORT_FORMAT, "name": feature_list.name, "description": feature_list.description,
            "modelId": self.model_id, "layer": source, "sae_fingerprint": self.fingerprint,
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "features": [{"modelId": self.model_id, "layer": source, "index": str(item.feature), "description": item.description,
                          **({"label": labels[item.feature]} if item.feature in labels else {})} for item in feature_list.items],
        }

    def import_list(self, document: dict, *, name: str | None = None, import_labels: bool = True, allow_other_sae: bool = False) -> FeatureList:
        """Merge a Neuronpedia-style list into the list of the same (or the given) name; returns the result.
        Checks everything before writing anything; labels in the document are set only where a feature has none."""
        if not isinstance(document, dict):
            raise ItdError("a list document must be a JSON object with 'name' and 'features'")
        fingerprint = document.get("sae_fingerprint")
        if fingerprint and fingerprint != self.fingerprint and not allow_other_sae:
            raise ItdError(f"this list was exported from another SAE (fingerprint {str(fingerprint)[:16]}…, this one is {self.fingerprint[:16]}…): "
                           "feature ids would mean other features; pass allow_other_sae=True to import it anyway")
        name = _check_name(name or document.get("name") or "")
        entries = document.get("features", document.get("neurons"))
        if not isinstance(entries, list):
            raise ItdError("a list document needs a 'features' array (Neuronpedia: 'neurons')")
        parsed: list[tuple[int, str, str | None]] = []
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ItdError(f"feature entry #{position} is not an object")
            raw = entry.get("index", entry.get("feature", entry.get("id")))
            feature = self.check_feature(raw) if raw is not None and str(raw).strip().lstrip("-").isdigit() else None
            if feature is None:
                raise ItdError(f"feature entry #{position} has no integer 'index' (got {raw!r})")
            parsed.append((feature, str(entry.get("description") or ""), entry.get("label")))
        now = time.time()
        with self._write() as db:
            list_id = self._list_id(db, name, create=True, now=now)
            if document.get("description") and not db.execute("SELECT description FROM lists WHERE id=?", (list_id,)).fetchone()[0]:
                db.execute("UPDATE lists SET description=? WHERE id=?", (str(document["description"]), list_id))
            for feature, description, label in parsed:
                db.execute("INSERT INTO list_items VALUES(?, ?, ?, ?) ON CONFLICT(list_id, feature) DO UPDATE SET "
                           "description=CASE WHEN list_items.description = '' THEN excluded.description ELSE list_items.description END",
                           (list_id, feature, description, now))
                if import_labels and label and str(label).strip():
                    if db.execute("SELECT 1 FROM labels WHERE feature=?", (feature,)).fetchone() is None:
                        db.execute("INSERT INTO labels VALUES(?, ?, ?, ?)", (feature, str(label).strip(), "import", now))
                        db.execute("INSERT INTO label_history(feature, label, author, at) VALUES(?, ?, 'import', ?)", (feature, str(label).strip(), now))
            db.execute("UPDATE lists SET updated=? WHERE id=?", (now, list_id))
        return self.get_list(name)


def _check_name(name: str) -> str:
    name = str(name).strip()
    if not name:
        raise ItdError("a list needs a non-empty name")
    if len(name) > 200:
        raise ItdError(f"list name too long ({len(name)} characters; at most 200)")
    return name
