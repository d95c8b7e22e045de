-- A real business rule that can refuse an order: blocked accounts.
CREATE TABLE IF NOT EXISTS blocked_users (
    user_id    VARCHAR(64) NOT NULL,
    reason     VARCHAR(255) NOT NULL DEFAULT '',
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Reservations that could not become orders; their unit went back to stock
-- (compensation). Kept apart from `orders` so the user may buy again.
CREATE TABLE IF NOT EXISTS failed_orders (
    order_id    VARCHAR(64) NOT NULL,
    event_id    VARCHAR(64) NOT NULL,
    user_id     VARCHAR(64) NOT NULL,
    reason      VARCHAR(32) NOT NULL,
    reserved_at DATETIME(3) NOT NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id),
    KEY by_event (event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
