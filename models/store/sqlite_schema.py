"""The SQLite schema, as migrations applied in order (see `SqliteBase._migrate`).

Never edit a migration that has shipped: add a new one. Each runs once, in a
transaction, and bumps `PRAGMA user_version`.
"""

MIGRATIONS: list[str] = [
    # 1: users, logins, reset tokens, blocks
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        username TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        phone TEXT,
        avatar TEXT,
        status TEXT NOT NULL DEFAULT '',
        presence_setting TEXT NOT NULL DEFAULT 'online',
        last_seen TEXT,
        role TEXT NOT NULL DEFAULT 'user',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX users_email ON users (email);
    CREATE UNIQUE INDEX users_username ON users (username COLLATE NOCASE);
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        refresh_jti TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;
    CREATE TABLE reset_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    CREATE TABLE blocks (
        blocker_id TEXT NOT NULL,
        blocked_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (blocker_id, blocked_id)
    ) WITHOUT ROWID;
    CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);
    """,
    # 2: chats, members, messages, uploads
    """
    CREATE TABLE chats (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        name TEXT,
        description TEXT NOT NULL DEFAULT '',
        avatar TEXT,
        pair_key TEXT,
        only_admins_add INTEGER NOT NULL DEFAULT 0,
        created_by TEXT NOT NULL,
        last_message_id TEXT,
        last_activity TEXT NOT NULL,
        message_count INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX chats_pair ON chats (pair_key) WHERE pair_key IS NOT NULL;
    CREATE TABLE members (
        chat_id TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        joined_at TEXT NOT NULL,
        muted INTEGER NOT NULL DEFAULT 0,
        archived INTEGER NOT NULL DEFAULT 0,
        last_read_id TEXT,
        last_delivered_id TEXT,
        PRIMARY KEY (chat_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX members_user ON members (user_id, chat_id);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        chat_id TEXT NOT NULL,
        sender_id TEXT NOT NULL,
        content TEXT NOT NULL,
        type TEXT NOT NULL,
        metadata TEXT,
        reply_to TEXT,
        client_id TEXT,
        edited_at TEXT,
        deleted INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX messages_chat ON messages (chat_id, id);
    CREATE INDEX messages_changed ON messages (chat_id, updated_at);
    CREATE UNIQUE INDEX messages_client ON messages (sender_id, client_id) WHERE client_id IS NOT NULL;
    CREATE TRIGGER messages_last AFTER INSERT ON messages BEGIN
        UPDATE chats SET last_message_id = NEW.id, last_activity = NEW.created_at,
            message_count = message_count + 1
        WHERE id = NEW.chat_id;
    END;
    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        size INTEGER NOT NULL,
        mime_type TEXT NOT NULL,
        purpose TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 3: call history
    """
    CREATE TABLE calls (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        initiator_id TEXT NOT NULL,
        chat_id TEXT,
        status TEXT NOT NULL,
        participants TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        duration INTEGER
    );
    CREATE TABLE call_members (
        user_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        type TEXT NOT NULL,
        PRIMARY KEY (user_id, call_id)
    ) WITHOUT ROWID;
    CREATE INDEX call_members_type ON call_members (user_id, type, call_id);
    """,
    # 4: message search on an index. A trigram index finds any substring of three or
    # more characters without reading the chat; `LIKE` had to read every message of it.
    # `messages` has no integer rowid for FTS5 to point at, so each searchable (not
    # deleted) message gets a key in `message_search_keys`, which also says its chat.
    # The text indexed is SQLite's `lower(content)` (ASCII only), matched case-sensitively:
    # exactly the case-insensitivity of `LIKE`, so a match needs no second check. The
    # index is contentless: the text stays in `messages` only, and the triggers hand the
    # old text back when it changes. Existing messages are indexed here, once.
    # New messages are not indexed as they are inserted: FTS5 writes an index segment
    # per statement, so indexing a message at a time costs about 50 us of the send path
    # against 9 us in bulk. An insert only queues the id in `message_search_pending`;
    # the store indexes the queue in bulk every second and always before a search, so
    # a search still sees every message committed before it.
    """
    CREATE TABLE message_search_keys (
        key INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        chat_id TEXT NOT NULL
    );
    CREATE VIRTUAL TABLE message_search USING fts5 (
        content, content = '', tokenize = 'trigram case_sensitive 1'
    );
    INSERT INTO message_search_keys (message_id, chat_id)
        SELECT id, chat_id FROM messages WHERE deleted = 0 ORDER BY id;
    INSERT INTO message_search (rowid, content)
        SELECT k.key, lower(m.content) FROM message_search_keys k JOIN messages m ON m.id = k.message_id;
    INSERT INTO message_search (message_search) VALUES ('optimize');
    CREATE TABLE message_search_pending (message_id TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TRIGGER messages_search_insert AFTER INSERT ON messages WHEN NEW.deleted = 0 BEGIN
        INSERT OR IGNORE INTO message_search_pending (message_id) VALUES (NEW.id);
    END;
    CREATE TRIGGER messages_search_update AFTER UPDATE OF content, deleted ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, content)
            SELECT 'delete', key, lower(OLD.content) FROM message_search_keys WHERE message_id = OLD.id;
        DELETE FROM message_search_keys WHERE message_id = OLD.id AND NEW.deleted != 0;
        INSERT OR IGNORE INTO message_search_keys (message_id, chat_id)
            SELECT NEW.id, NEW.chat_id WHERE NEW.deleted = 0;
        INSERT INTO message_search (rowid, content)
            SELECT key, lower(NEW.content) FROM message_search_keys WHERE message_id = NEW.id;
    END;
    CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, content)
            SELECT 'delete', key, lower(OLD.content) FROM message_search_keys WHERE message_id = OLD.id;
        DELETE FROM message_search_keys WHERE message_id = OLD.id;
        DELETE FROM message_search_pending WHERE message_id = OLD.id;
    END;
    """,
    # 5: the chat's last message only ever moves forward. A send takes its id (and time)
    # before its awaited checks, so a message with an older id can commit after a newer
    # one; the trigger of migration 2 then made the older the chat's last. Each field
    # now keeps the larger of old and new, as MongoDB's `$max` does (ids sort by time;
    # `max` of anything and NULL is NULL, hence the COALESCE before the first message).
    """
    DROP TRIGGER messages_last;
    CREATE TRIGGER messages_last AFTER INSERT ON messages BEGIN
        UPDATE chats SET last_message_id = max(coalesce(last_message_id, ''), NEW.id),
            last_activity = max(last_activity, NEW.created_at),
            message_count = message_count + 1
        WHERE id = NEW.chat_id;
    END;
    """,
    # 6: a user's display name beside the unique username (NULL: show the username), and
    # a group's owner, a field of its own beside `created_by` (which keeps saying who made
    # it). Every group so far is owned by its creator, so the owner is filled in from
    # `created_by` here, once, rather than left to a fallback on every read; private chats
    # have no owner and keep NULL.
    """
    ALTER TABLE users ADD COLUMN display_name TEXT;
    ALTER TABLE chats ADD COLUMN owner_id TEXT;
    UPDATE chats SET owner_id = created_by WHERE type = 'group';
    """,
]
