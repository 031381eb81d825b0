{#-
    Per UTC day per category: who viewed the category's products and who bought an order whose journey
    (correlation_id) carted one of them, categories as of the view and the cart.
-#}
with

events as (
    select * from {{ ref('int_events_enriched') }}
    where {{ in_partition_range('event_at') }}
),

category_days as (
    select * from {{ ref('int_category_days') }}
    where {{ in_partition_range('activity_date') }} and not is_all_categories
),

purchased_carts as (
    select * from {{ ref('int_purchased_carts') }}
    where {{ in_partition_range('purchase_date') }}
),

viewers as (
    select
        category,
        cast(event_at as date) as activity_date,
        count(distinct user_id) as viewers
    from events
    where event_type = 'user_visit' and category is not null
    group by 1, 2
),

-- On the purchase's day, even when the cart was the day before (a journey across midnight).
purchasers as (
    select
        category,
        purchase_date as activity_date,
        count(distinct user_id) as purchasers
    from purchased_carts
    where category is not null
    group by 1, 2
),

-- A category nobody viewed or bought from on a day is a 0.
counts as (
    select
        category_days.activity_date,
        category_days.category,
        coalesce(viewers.viewers, 0) as viewers,
        coalesce(purchasers.purchasers, 0) as purchasers
    from category_days
    left join viewers
        on category_days.activity_date = viewers.activity_date
        and category_days.category = viewers.category
    left join purchasers
        on category_days.activity_date = purchasers.activity_date
        and category_days.category = purchasers.category
),

rates as (
    select
        *,
        round({{ divide('purchasers', 'nullif(viewers, 0)') }}, 4) as conversion_rate
    from counts
),

final as (
    {{ daily_partition_rows('rates', 'activity_date') }}
)

select * from final
