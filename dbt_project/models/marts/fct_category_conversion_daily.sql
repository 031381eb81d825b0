{{ config(materialized='incremental', incremental_strategy='append', tags=['daily'], pre_hook="{{ delete_partition_range() }}") }}

{#-
    Per UTC day per category: who viewed the category's products and who bought an order whose journey
    (correlation_id) carted one of them, categories as of the view and the cart.
-#}
with

events as (
    select * from {{ ref('int_events_enriched') }}
    where {{ in_partition_range('event_at') }}
),

dates as (
    select * from {{ ref('dim_dates') }}
    where {{ in_partition_range('date_day') }}
),

product_versions as (
    select * from {{ ref('snap_products') }}
),

daily_events as (
    select
        *,
        cast(event_at as date) as activity_date
    from events
),

-- One row per day per category of the catalog (any version): a category nobody viewed is a 0.
grid as (
    select
        dates.date_day as activity_date,
        categories.category
    from dates
    cross join (select distinct category from product_versions) as categories
),

viewers as (
    select
        activity_date,
        category,
        count(distinct user_id) as viewers
    from daily_events
    where event_type = 'user_visit' and category is not null
    group by activity_date, category
),

-- On the purchase's day, even when the cart was the day before (a journey across midnight).
purchasers as (
    select
        purchase_date as activity_date,
        category,
        count(distinct user_id) as purchasers
    from {{ ref('int_purchased_carts') }}
    where category is not null and {{ in_partition_range('purchase_date') }}
    group by purchase_date, category
),

counts as (
    select
        grid.activity_date,
        grid.category,
        coalesce(viewers.viewers, 0) as viewers,
        coalesce(purchasers.purchasers, 0) as purchasers
    from grid
    left join viewers
        on grid.activity_date = viewers.activity_date
        and grid.category = viewers.category
    left join purchasers
        on grid.activity_date = purchasers.activity_date
        and grid.category = purchasers.category
),

final as (
    select
        *,
        round(purchasers / nullif(viewers, 0), 4) as conversion_rate
    from counts
)

select
    final.*,
    cast(activity_date as date) as partition_date,
    current_timestamp as built_at
from final
where {{ in_partition_range('activity_date') }}
