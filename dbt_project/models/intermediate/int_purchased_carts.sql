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

final as (
    select
        orders.event_id as purchase_event_id,
        carts.event_id as cart_event_id,
        orders.event_at as purchased_at,
        cast(orders.event_at as date) as purchase_date,
        orders.user_id,
        carts.product_id,
        carts.category
    from events as orders
    inner join events as carts
        on carts.event_type = 'add_to_cart'
        and carts.correlation_id = orders.correlation_id
        and carts.event_at <= orders.event_at
    where orders.event_type = 'purchase'
)

select * from final
