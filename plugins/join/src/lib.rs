//! Example plugin: joins orders with reference data read through the host's lookups.
//!
//! Each order names a user and a product; the batch's users are looked up in table
//! `users` and its products in table `prices`, once per batch each, then every order
//! leaves with its user's name and segment and its price and total.
//!
//! - An order whose product has no price cannot be priced: a domain error (DLQ).
//! - An order whose user is unknown leaves with `user: null` (the join is optional).
//! - A table that cannot be read now fails every order of the batch as an
//!   infrastructure error: they are retried or handed back, never dead-lettered.
//!
//! Publish with `--lookups users,prices`; map them with `PIPELINE_LOOKUPS` (or
//! `host run --lookup users=file://users.jsonl`).

use guest_sdk::{Error, Found, Output, Record, lookup};
use serde::{Deserialize, Serialize};

/// An incoming order; unknown fields are ignored.
#[derive(Deserialize)]
pub struct Order<'a> {
    pub order_id: &'a str,
    pub user_id: &'a str,
    pub sku: &'a str,
    pub quantity: u32,
}

/// A row of `users`.
#[derive(Deserialize)]
pub struct User {
    pub name: String,
    pub segment: String,
}

/// A row of `prices`: the price in cents (a number, or a CSV's text).
#[derive(Deserialize)]
pub struct Price {
    #[serde(deserialize_with = "cents")]
    pub price_cents: i64,
}

fn cents<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cents {
        Number(i64),
        Text(String),
    }
    match Cents::deserialize(d)? {
        Cents::Number(n) => Ok(n),
        Cents::Text(t) => t.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// The joined order.
#[derive(Serialize)]
pub struct Joined<'a> {
    pub order_id: &'a str,
    pub sku: &'a str,
    pub quantity: u32,
    pub user: Option<JoinedUser<'a>>,
    pub price_cents: i64,
    pub total_cents: i64,
}

/// The user's part of a joined order.
#[derive(Serialize)]
pub struct JoinedUser<'a> {
    pub id: &'a str,
    pub name: String,
    pub segment: String,
}

/// The batch transform: two lookups for the whole batch, then one output per order.
pub fn transform(records: &[Record]) -> Vec<Result<Output, Error>> {
    let orders: Vec<Result<Order, Error>> = records
        .iter()
        .map(|r| r.json::<Order>().map_err(Error::from))
        .collect();
    let valid = || orders.iter().filter_map(|o| o.as_ref().ok());
    let tables = lookup("users", valid().map(|o| o.user_id))
        .and_then(|users| Ok((users, lookup("prices", valid().map(|o| o.sku))?)));
    let (users, prices) = match tables {
        Ok(found) => found,
        // Every order needed the tables: all of them are retried.
        Err(e) => return records.iter().map(|_| Err(e.clone().into())).collect(),
    };
    orders
        .into_iter()
        .map(|order| join(order?, &users, &prices))
        .collect()
}

fn join(order: Order, users: &Found, prices: &Found) -> Result<Output, Error> {
    let price: Price = prices
        .json(order.sku)?
        .ok_or_else(|| Error::domain(format!("no price for sku {:?}", order.sku)))?;
    let user = users.json::<User>(order.user_id)?.map(|u| JoinedUser {
        id: order.user_id,
        name: u.name,
        segment: u.segment,
    });
    let total_cents = price
        .price_cents
        .checked_mul(i64::from(order.quantity))
        .ok_or_else(|| {
            Error::domain(format!(
                "the total of order {:?} is out of range",
                order.order_id
            ))
        })?;
    let joined = Joined {
        order_id: order.order_id,
        sku: order.sku,
        quantity: order.quantity,
        user,
        price_cents: price.price_cents,
        total_cents,
    };
    Ok(Output::json(&joined)?.with_key(order.user_id.as_bytes()))
}

guest_sdk::export_batch_transform!(transform);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::lookup::{stub, stub_unavailable};
    use serde_json::json;

    fn stub_tables() {
        stub(
            "users",
            [("u1", json!({"id": "u1", "name": "Ann", "segment": "gold"}))],
        );
        stub(
            "prices",
            [
                ("p1", json!({"sku": "p1", "price_cents": 250})),
                ("p2", json!({"sku": "p2", "price_cents": "1000"})),
            ],
        );
    }

    fn run(payloads: &[&str]) -> Vec<Result<serde_json::Value, Error>> {
        let records: Vec<Record> = payloads.iter().map(|p| Record::new(p.as_bytes())).collect();
        transform(&records)
            .into_iter()
            .map(|r| r.map(|o| serde_json::from_slice(o.payload()).expect("json")))
            .collect()
    }

    #[test]
    fn orders_are_joined_with_their_user_and_price() {
        stub_tables();
        let out = run(&[
            r#"{"order_id":"o1","user_id":"u1","sku":"p1","quantity":2}"#,
            r#"{"order_id":"o2","user_id":"u9","sku":"p2","quantity":1}"#,
        ]);
        let first = out[0].as_ref().expect("joined");
        assert_eq!(first["user"]["segment"], "gold");
        assert_eq!(first["total_cents"], 500);
        let second = out[1].as_ref().expect("joined without its user");
        assert_eq!(second["user"], serde_json::Value::Null);
        assert_eq!(second["price_cents"], 1000);
    }

    #[test]
    fn an_unpriced_order_is_bad_data_and_an_unreadable_table_retries_the_batch() {
        stub_tables();
        let out = run(&[
            r#"{"order_id":"o1","user_id":"u1","sku":"nope","quantity":1}"#,
            "not json",
        ]);
        assert!(matches!(out[0], Err(Error::Domain(_))), "{:?}", out[0]);
        assert!(matches!(out[1], Err(Error::Domain(_))));
        stub_unavailable("prices", "throttled");
        let out = run(&[r#"{"order_id":"o1","user_id":"u1","sku":"p1","quantity":1}"#]);
        assert!(
            matches!(out[0], Err(Error::Infrastructure(_))),
            "{:?}",
            out[0]
        );
    }
}
