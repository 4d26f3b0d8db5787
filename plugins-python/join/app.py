"""Example plugin in Python: the `join` plugin of `plugins/join`, output for output.

Joins each order with its user (table `users`) and its price (table `prices`), each
table asked once per batch for the keys the batch needs (`prepare`).
"""

import pipeline_plugin as pp


def order_of(record):
    """The order in `record`, or `None` when it is not one (its transform says why)."""
    try:
        order = record.json()
    except pp.DomainError:
        return None
    return order if isinstance(order, dict) else None


def prepare(records):
    orders = [o for o in map(order_of, records) if o is not None]
    users = pp.lookup("users", (o["user_id"] for o in orders if isinstance(o.get("user_id"), str)))
    prices = pp.lookup("prices", (o["sku"] for o in orders if isinstance(o.get("sku"), str)))
    return users, prices


def field(order, name, kind):
    value = order.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise pp.DomainError(f"invalid JSON payload: `{name}` is missing or not a {kind.__name__}")
    return value


def transform(record, tables):
    users, prices = tables
    order = record.json()
    if not isinstance(order, dict):
        raise pp.DomainError("invalid JSON payload: not an object")
    order_id = field(order, "order_id", str)
    user_id = field(order, "user_id", str)
    sku = field(order, "sku", str)
    quantity = field(order, "quantity", int)
    if not 0 <= quantity <= 2**32 - 1:
        raise pp.DomainError("invalid JSON payload: `quantity` is out of range")
    price = prices.json(sku)
    if price is None:
        raise pp.DomainError(f'no price for sku "{sku}"')
    cents = price.get("price_cents")
    if isinstance(cents, str):
        try:
            cents = int(cents.strip())
        except ValueError:
            raise pp.DomainError(f"the price of {sku!r} is not a number") from None
    if not isinstance(cents, int) or isinstance(cents, bool) or not -(2**63) <= cents * quantity < 2**63:
        raise pp.DomainError(f"the total of order {order_id!r} is out of range")
    user = users.json(user_id)
    if user is not None and not all(isinstance(user.get(f), str) for f in ("name", "segment")):
        raise pp.DomainError(f"the user row of {user_id!r} has no text `name` and `segment`")
    joined = {
        "order_id": order_id,
        "sku": sku,
        "quantity": quantity,
        "user": None
        if user is None
        else {"id": user_id, "name": user["name"], "segment": user["segment"]},
        "price_cents": cents,
        "total_cents": cents * quantity,
    }
    return pp.Output.json(joined).with_key(user_id)


WitWorld = pp.plugin("join", "0.1.0", transform, prepare=prepare)
