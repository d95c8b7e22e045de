//! What an outbox entry holds, and which entries a pass may acknowledge.
//!
//! reserve.lua writes an entry per call, in one field `o`: a line per reservation,
//! `order|user|reserved_at|unit|room position|client network` (the last two empty when
//! absent; ids and networks never hold a `|` or a line break); spill.lua an entry of one
//! line. Entries carry no event id (the outbox is the event's own). Versions before
//! 2026-12-03 wrote an entry per reservation, a field each: read here too, so that entries
//! left by them go out after an upgrade.

use crate::kafka::OrderMessage;
use flashgate_core::ids::EventId;
use redis::streams::StreamId;

/// The orders of an outbox entry, at least one. A line or field that does not parse is
/// left empty, and the consumer sets the order aside as malformed.
pub(super) fn orders_of(event: &EventId, e: &StreamId) -> Vec<OrderMessage> {
    let text = |f: &str| e.get::<String>(f);
    let Some(packed) = text("o") else {
        return vec![OrderMessage {
            order_id: text("order_id").unwrap_or_default(),
            event_id: event.as_str().to_owned(),
            user_id: text("user_id").unwrap_or_default(),
            reserved_at: text("reserved_at")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            room_position: text("room_position").and_then(|p| p.parse().ok()),
            unit_no: text("unit_no").and_then(|u| u.parse().ok()),
            client_net: text("client_net"),
        }];
    };
    packed
        .split('\n')
        .map(|line| order_of(event, line))
        .collect()
}

fn order_of(event: &EventId, line: &str) -> OrderMessage {
    let mut parts = line.split('|');
    let mut next = || parts.next().unwrap_or_default();
    let (order, user, at, unit, position, net) = (next(), next(), next(), next(), next(), next());
    OrderMessage {
        order_id: order.to_owned(),
        event_id: event.as_str().to_owned(),
        user_id: user.to_owned(),
        reserved_at: at.parse().unwrap_or(0),
        unit_no: unit.parse().ok(),
        room_position: position.parse().ok(),
        client_net: Some(net).filter(|n| !n.is_empty()).map(str::to_owned),
    }
}

/// Which entries the broker holds whole. The entries' orders, `orders[i]` of entry `i`,
/// went out in order in messages of `lens[j]` orders, delivered or not as `sent[j]` says;
/// an entry is done once every message with an order of it was delivered.
pub(super) fn delivered(orders: &[usize], lens: &[usize], sent: &[bool]) -> Vec<bool> {
    let each: Vec<bool> = lens
        .iter()
        .zip(sent)
        .flat_map(|(len, ok)| std::iter::repeat_n(*ok, *len))
        .collect();
    let mut at = 0;
    orders
        .iter()
        .map(|n| {
            let whole = each.get(at..at + n).is_some_and(|o| o.iter().all(|ok| *ok));
            at += n;
            whole
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn entry(fields: &[(&str, &str)]) -> StreamId {
        StreamId {
            id: "1-0".into(),
            map: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
                .collect(),
        }
    }

    fn event() -> EventId {
        EventId::parse("e1").expect("event id")
    }

    #[test]
    fn a_line_is_read_field_by_field() {
        let orders = orders_of(&event(), &entry(&[("o", "o1|u1|1700|42|7|10.1.2.0/24")]));
        assert_eq!(
            orders,
            vec![OrderMessage {
                order_id: "o1".into(),
                event_id: "e1".into(),
                user_id: "u1".into(),
                reserved_at: 1700,
                room_position: Some(7),
                unit_no: Some(42),
                client_net: Some("10.1.2.0/24".into()),
            }]
        );
        let plain = &orders_of(&event(), &entry(&[("o", "o2|u2|1800|3||")]))[0];
        assert_eq!(
            (plain.room_position, plain.client_net.clone()),
            (None, None)
        );
        assert_eq!((plain.unit_no, plain.reserved_at), (Some(3), 1800));
    }

    #[test]
    fn an_entry_of_a_call_holds_an_order_per_line_in_order() {
        let orders = orders_of(
            &event(),
            &entry(&[("o", "o1|u1|1700|9||\no2|u2|1700|8|4|")]),
        );
        let ids: Vec<(&str, &str, Option<u64>)> = orders
            .iter()
            .map(|o| (o.order_id.as_str(), o.user_id.as_str(), o.unit_no))
            .collect();
        assert_eq!(ids, [("o1", "u1", Some(9)), ("o2", "u2", Some(8))]);
        assert_eq!(orders[1].room_position, Some(4));
    }

    #[test]
    fn an_entry_of_a_field_each_is_read_as_the_same_order() {
        let old = entry(&[
            ("order_id", "o1"),
            ("user_id", "u1"),
            ("reserved_at", "1700"),
            ("unit_no", "42"),
            ("room_position", "7"),
            ("client_net", "10.1.2.0/24"),
        ]);
        let packed = entry(&[("o", "o1|u1|1700|42|7|10.1.2.0/24")]);
        assert_eq!(orders_of(&event(), &old), orders_of(&event(), &packed));
    }

    #[test]
    fn a_malformed_entry_leaves_what_does_not_parse_empty() {
        let orders = orders_of(&event(), &entry(&[("o", "o1|u1|soon")]));
        assert_eq!(
            (orders[0].order_id.as_str(), orders[0].reserved_at),
            ("o1", 0)
        );
        assert_eq!((orders[0].unit_no, orders[0].room_position), (None, None));
        let none = orders_of(&event(), &entry(&[]));
        assert_eq!(none.len(), 1);
        assert!(none[0].order_id.is_empty() && none[0].user_id.is_empty());
    }

    #[test]
    fn an_entry_is_done_only_when_every_message_with_its_orders_was_delivered() {
        // Entries of 3, 1 and 4 orders in messages of 2, 2, 2 and 2: the second message
        // failed, and it holds the last order of the first entry and the second entry.
        let done = delivered(&[3, 1, 4], &[2, 2, 2, 2], &[true, false, true, true]);
        assert_eq!(done, [false, false, true]);
        assert_eq!(delivered(&[3, 1, 4], &[8], &[true]), [true, true, true]);
        assert_eq!(delivered(&[3, 1, 4], &[8], &[false]), [false, false, false]);
    }

    #[test]
    fn orders_no_message_carried_are_not_delivered() {
        assert_eq!(delivered(&[2, 2], &[2], &[true]), [true, false]);
    }
}
