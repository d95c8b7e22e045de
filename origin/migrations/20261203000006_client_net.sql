-- The network (/24 or /64) of the client each purchase came from, signed by the edge
-- (NULL where the edge knew no address, and for orders written before it): what
-- `flashgate event report` groups wins by.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS client_net VARCHAR(48) NULL;
