-- 0019: group scope of users and tokens, tokens owned by a user, and a
-- per-token request rate limit (docs/users.md).
--
-- groups is a JSON array of group names ('' or '[]': not scoped).
-- tokens.user_name is the owning user ('' for a token of no user); the
-- store deletes a user's tokens with the user.

ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '';

ALTER TABLE tokens ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN groups TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN rate_limit INTEGER NOT NULL DEFAULT 0;

CREATE INDEX tokens_user ON tokens (user_name);
