{#-
    Per product per UTC day: page views, add-to-carts and the purchases they led to. A purchase counts
    for every product its journey (correlation_id) carted at or before it, once per product.
-#}
with

events as (
    select * from {{ ref('int_events_enriched') }}
    where {{ in_partition_range('event_at') }}
),

purchased_carts as (
    select * from {{ ref('int_purchased_carts') }}
    where {{ in_partition_range('purchase_date') }}
),

daily_events as (
    select
        *,
        cast(event_at as date) as activity_date
    from events
),

page_views as (
    select
        product_id,
        activity_date,
        count(*) as page_views
    from daily_events
    where event_type = 'user_visit' and product_id is not null
    group by 1, 2
),

add_to_carts as (
    select
        product_id,
        activity_date,
        count(*) as add_to_carts
    from daily_events
    where event_type = 'add_to_cart'
    group by 1, 2
),

-- On the purchase's day, even when the cart was the day before (a journey across midnight).
purchases as (
    select
        product_id,
        purchase_date as activity_date,
        count(distinct purchase_event_id) as purchases
    from purchased_carts
    group by 1, 2
),

product_days as (
    select
        product_id,
        activity_date
    from page_views
    union
    select
        product_id,
        activity_date
    from add_to_carts
    union
    select
        product_id,
        activity_date
    from purchases
),

counts as (
    select
        product_days.product_id,
        product_days.activity_date,
        coalesce(page_views.page_views, 0) as page_views,
        coalesce(add_to_carts.add_to_carts, 0) as add_to_carts,
        coalesce(purchases.purchases, 0) as purchases
    from product_days
    left join page_views
        on product_days.product_id = page_views.product_id
        and product_days.activity_date = page_views.activity_date
    left join add_to_carts
        on product_days.product_id = add_to_carts.product_id
        and product_days.activity_date = add_to_carts.activity_date
    left join purchases
        on product_days.product_id = purchases.product_id
        and product_days.activity_date = purchases.activity_date
),

rates as (
    select
        *,
        round({{ divide('add_to_carts', 'nullif(page_views, 0)') }}, 4) as add_to_cart_rate,
        round({{ divide('purchases', 'nullif(page_views, 0)') }}, 4) as conversion_rate
    from counts
),

final as (
    {{ daily_partition_rows('rates', 'activity_date') }}
)

select * from final
