{#-
    One row per purchase and add-to-cart of its journey at or before it: how an order is attributed to
    products and categories (a purchase carries no product; its journey, the correlation_id, does).
    The category is the product's as of the cart. A journey may cross midnight: rows are dated by the
    purchase.
-#}
with

events as (
    select * from {{ ref('int_events_enriched') }}
),

purchases as (
    select * from events
    where event_type = 'purchase'
),

carts as (
    select * from events
    where event_type = 'add_to_cart'
),

final as (
    select
        purchases.event_id as purchase_event_id,
        carts.event_id as cart_event_id,
        purchases.event_at as purchased_at,
        cast(purchases.event_at as date) as purchase_date,
        purchases.user_id,
        carts.product_id,
        carts.category
    from purchases
    inner join carts
        on purchases.correlation_id = carts.correlation_id
        and purchases.event_at >= carts.event_at
)

select * from final
