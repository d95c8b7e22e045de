-- Which of the event's units each order holds (core::fence), and the database's fence: a
-- unit sold twice (after a Redis failover to a replica that missed its first sale) is
-- refused, never a second row. NULL for orders written before unit numbers (a unique key
-- lets NULLs repeat).
ALTER TABLE orders
    ADD COLUMN IF NOT EXISTS unit_no INT UNSIGNED NULL,
    ADD UNIQUE KEY IF NOT EXISTS uniq_event_unit (event_id, unit_no);
ALTER TABLE failed_orders ADD COLUMN IF NOT EXISTS unit_no INT UNSIGNED NULL;
