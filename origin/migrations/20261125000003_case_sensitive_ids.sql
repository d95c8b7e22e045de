-- Ids are ASCII and case matters (`CaseX` and `casex` are two users, as in Redis): the
-- utf8mb4 default collation compared them without case, so the unique key on
-- (event_id, user_id) refused the second one's order as a duplicate. latin1_general_cs
-- rather than a _bin collation: ids are ASCII, and MySQL drivers (sqlx among them) report
-- _bin text columns as VARBINARY.
ALTER TABLE orders
    MODIFY order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    MODIFY event_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    MODIFY user_id  VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL;
ALTER TABLE failed_orders
    MODIFY order_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    MODIFY event_id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL,
    MODIFY user_id  VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL;
ALTER TABLE blocked_users
    MODIFY user_id  VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs NOT NULL;
