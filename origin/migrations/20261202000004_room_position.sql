-- The room position the edge admitted each purchase at (NULL without the room, and for
-- orders written before it): what `flashgate event report` measures fairness by.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS room_position BIGINT UNSIGNED NULL;
