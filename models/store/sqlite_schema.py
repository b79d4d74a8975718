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
]
