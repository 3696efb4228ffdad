-- The state database of schema version 2 (sqlite), as syndicator created it,
-- with one article and one subscriber: tests upgrade it to the current schema.

CREATE TABLE articles (
	id VARCHAR(128) NOT NULL,
	seq BIGINT NOT NULL,
	source TEXT NOT NULL,
	line INTEGER NOT NULL,
	title TEXT NOT NULL,
	body TEXT NOT NULL,
	format VARCHAR(16) NOT NULL,
	summary TEXT NOT NULL,
	link TEXT NOT NULL,
	author TEXT NOT NULL,
	regions TEXT NOT NULL,
	topics TEXT NOT NULL,
	front_regions TEXT,
	front_topics TEXT,
	front_date DATETIME,
	front_updated DATETIME,
	content_hash VARCHAR(64) NOT NULL,
	classified_with VARCHAR(64) NOT NULL,
	first_seen DATETIME NOT NULL,
	published DATETIME NOT NULL,
	updated DATETIME NOT NULL,
	removed_at DATETIME,
	page_signature VARCHAR(64) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (seq)
);

CREATE INDEX ix_articles_removed_at ON articles (removed_at);

CREATE INDEX ix_articles_source ON articles (source);

CREATE TABLE feeds (
	path TEXT NOT NULL,
	signature VARCHAR(64) NOT NULL,
	PRIMARY KEY (path)
);

CREATE TABLE files (
	path TEXT NOT NULL,
	size BIGINT NOT NULL,
	mtime_ns BIGINT NOT NULL,
	problems TEXT NOT NULL,
	PRIMARY KEY (path)
);

CREATE TABLE instances (
	id VARCHAR(255) NOT NULL,
	host VARCHAR(255) NOT NULL,
	pid INTEGER NOT NULL,
	roles VARCHAR(64) NOT NULL,
	started_at DATETIME NOT NULL,
	heartbeat_at DATETIME NOT NULL,
	cycle_since DATETIME,
	PRIMARY KEY (id)
);

CREATE TABLE matches (
	subscriber_id INTEGER NOT NULL,
	article_id VARCHAR(128) NOT NULL,
	matched_at DATETIME NOT NULL,
	message INTEGER,
	PRIMARY KEY (subscriber_id, article_id)
);

CREATE INDEX ix_matches_message ON matches (message);

CREATE TABLE messages (
	id INTEGER NOT NULL,
	subscriber_id INTEGER NOT NULL,
	kind VARCHAR(16) NOT NULL,
	message_id VARCHAR(255) NOT NULL,
	recipient VARCHAR(320) NOT NULL,
	body BLOB NOT NULL,
	status VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	next_attempt_at DATETIME,
	created_at DATETIME NOT NULL,
	sent_at DATETIME,
	last_error TEXT NOT NULL,
	lease_owner VARCHAR(255),
	lease_expires_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (message_id)
);

CREATE INDEX ix_messages_lease_owner ON messages (lease_owner);

CREATE INDEX ix_messages_status ON messages (status);

CREATE INDEX ix_messages_subscriber_id ON messages (subscriber_id);

CREATE TABLE meta (
	"key" VARCHAR(64) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY ("key")
);

CREATE TABLE subscribers (
	id INTEGER NOT NULL,
	email VARCHAR(320) NOT NULL,
	email_key VARCHAR(320) NOT NULL,
	name TEXT NOT NULL,
	filters TEXT NOT NULL,
	cadence VARCHAR(16) NOT NULL,
	hour INTEGER NOT NULL,
	weekday VARCHAR(3) NOT NULL,
	timezone VARCHAR(64) NOT NULL,
	source VARCHAR(16) NOT NULL,
	status VARCHAR(16) NOT NULL,
	added_at DATETIME NOT NULL,
	added_seq BIGINT NOT NULL,
	permanent_failures INTEGER NOT NULL,
	next_digest_at DATETIME,
	unsubscribed_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (email_key)
);

CREATE INDEX ix_subscribers_next_digest_at ON subscribers (next_digest_at);

CREATE TABLE subscription_requests (
	id INTEGER NOT NULL,
	email VARCHAR(320) NOT NULL,
	email_key VARCHAR(320) NOT NULL,
	settings TEXT NOT NULL,
	nonce VARCHAR(32) NOT NULL,
	requested_at DATETIME NOT NULL,
	confirmed_at DATETIME,
	PRIMARY KEY (id)
);

CREATE INDEX ix_subscription_requests_email_key ON subscription_requests (email_key);

CREATE INDEX ix_subscription_requests_requested_at ON subscription_requests (requested_at);

INSERT INTO meta (key, value) VALUES ('subscribers_revision', '0');

CREATE TRIGGER IF NOT EXISTS subscribers_revision_insert AFTER INSERT ON subscribers BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'subscribers_revision'; END;

CREATE TRIGGER IF NOT EXISTS subscribers_revision_delete AFTER DELETE ON subscribers BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'subscribers_revision'; END;

CREATE TRIGGER IF NOT EXISTS subscribers_revision_update AFTER UPDATE OF filters, status, added_seq, id ON subscribers BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'subscribers_revision'; END;

INSERT INTO meta (key, value) VALUES ('schema_version', '2');
INSERT INTO meta (key, value) VALUES ('articles_revision', '1:0123456789ab');
INSERT INTO articles (id, seq, source, line, title, body, format, summary, link, author, regions, topics, content_hash, classified_with, first_seen, published, updated, page_signature) VALUES ('kenya-green-lane', 1, 'wco-news.txt', 1, 'Kenya opens a green lane for AEOs', 'Kenya Revenue Authority opened a green lane for Authorized Economic Operators.', 'text', '', '', '', 'east-southern-africa', 'aeo', 'c0ffee', 'v1', '2026-02-27 09:00:00', '2026-02-27 09:00:00', '2026-02-27 09:00:00', '');
INSERT INTO subscribers (id, email, email_key, name, filters, cadence, hour, weekday, timezone, source, status, added_at, added_seq, permanent_failures, next_digest_at) VALUES (1, 'ana@example.org', 'ana@example.org', 'Ana', '{"exclude_regions": [], "exclude_topics": [], "keywords": [], "regions": ["east-southern-africa"], "topics": []}', 'daily', 8, 'mon', 'UTC', 'cli', 'active', '2026-02-27 09:00:00', 1, 0, '2026-02-28 08:00:00');
