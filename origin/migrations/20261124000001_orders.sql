-- Orders of record. order_id is minted by the origin at reservation; the unique key on
-- (event_id, user_id) is the database's own guard against a second order per user.
CREATE TABLE IF NOT EXISTS orders (
    order_id    VARCHAR(64) NOT NULL,
    event_id    VARCHAR(64) NOT NULL,
    user_id     VARCHAR(64) NOT NULL,
    status      VARCHAR(16) NOT NULL,
    reserved_at DATETIME(3) NOT NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id),
    UNIQUE KEY uniq_event_user (event_id, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
