{{ config(materialized='incremental', incremental_strategy='append', tags=['daily'], pre_hook="{{ delete_partition_range() }}") }}

{#-
    Ordered funnel per UTC day: per user, each step counts only when it happens at or after the user's
    first event of the step before it, the same day. Per category (as of each product view and cart)
    and over the whole shop (category = 'all'). See _marts_product.yml for the rules.
-#}
with

events as (
    select * from {{ ref('int_events_enriched') }}
    where {{ in_partition_range('event_at') }}  -- every step is within one day
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

-- One row per day per category of the catalog (any version) plus 'all': a step nobody reached is a 0.
grid as (
    select
        dates.date_day as activity_date,
        categories.category
    from dates
    cross join (
        select distinct category from product_versions
        union
        select 'all' as category
    ) as categories
),

-- The first two steps are category specific: a product view or cart belongs to its product's
-- category funnel; the 'all' funnel takes every page view and every cart.
browse_events as (
    select activity_date, category, user_id, event_type, event_at
    from daily_events
    where event_type in ('user_visit', 'add_to_cart') and category is not null

    union all

    select activity_date, 'all' as category, user_id, event_type, event_at
    from daily_events
    where event_type in ('user_visit', 'add_to_cart')
),

visit_steps as (
    select
        activity_date,
        category,
        user_id,
        min(event_at) as reached_at
    from browse_events
    where event_type = 'user_visit'
    group by activity_date, category, user_id
),

cart_steps as (
    select
        visit_steps.activity_date,
        visit_steps.category,
        visit_steps.user_id,
        min(carts.event_at) as reached_at
    from visit_steps
    inner join browse_events as carts
        on carts.event_type = 'add_to_cart'
        and carts.activity_date = visit_steps.activity_date
        and carts.category = visit_steps.category
        and carts.user_id = visit_steps.user_id
        and carts.event_at >= visit_steps.reached_at
    group by visit_steps.activity_date, visit_steps.category, visit_steps.user_id
),

checkout_steps as (
    select
        cart_steps.activity_date,
        cart_steps.category,
        cart_steps.user_id,
        min(checkouts.event_at) as reached_at
    from cart_steps
    inner join daily_events as checkouts
        on checkouts.event_type = 'checkout'
        and checkouts.activity_date = cart_steps.activity_date
        and checkouts.user_id = cart_steps.user_id
        and checkouts.event_at >= cart_steps.reached_at
    group by cart_steps.activity_date, cart_steps.category, cart_steps.user_id
),

purchase_steps as (
    select
        checkout_steps.activity_date,
        checkout_steps.category,
        checkout_steps.user_id,
        min(purchases.event_at) as reached_at
    from checkout_steps
    inner join daily_events as purchases
        on purchases.event_type = 'purchase'
        and purchases.activity_date = checkout_steps.activity_date
        and purchases.user_id = checkout_steps.user_id
        and purchases.event_at >= checkout_steps.reached_at
    group by checkout_steps.activity_date, checkout_steps.category, checkout_steps.user_id
),

steps as (
    select activity_date, category, 'visit' as step from visit_steps
    union all
    select activity_date, category, 'cart' as step from cart_steps
    union all
    select activity_date, category, 'checkout' as step from checkout_steps
    union all
    select activity_date, category, 'purchase' as step from purchase_steps
),

-- Each step CTE holds one row per user, so counting rows counts distinct users.
users_per_step as (
    select
        activity_date,
        category,
        count(*) filter (where step = 'visit') as visitors,
        count(*) filter (where step = 'cart') as cart_users,
        count(*) filter (where step = 'checkout') as checkout_users,
        count(*) filter (where step = 'purchase') as purchasers
    from steps
    group by activity_date, category
),

counts as (
    select
        grid.activity_date,
        grid.category,
        coalesce(users_per_step.visitors, 0) as visitors,
        coalesce(users_per_step.cart_users, 0) as cart_users,
        coalesce(users_per_step.checkout_users, 0) as checkout_users,
        coalesce(users_per_step.purchasers, 0) as purchasers
    from grid
    left join users_per_step
        on grid.activity_date = users_per_step.activity_date
        and grid.category = users_per_step.category
),

final as (
    select
        *,
        round(cart_users / nullif(visitors, 0), 4) as visit_to_cart_rate,
        round(checkout_users / nullif(cart_users, 0), 4) as cart_to_checkout_rate,
        round(purchasers / nullif(checkout_users, 0), 4) as checkout_to_purchase_rate,
        round(purchasers / nullif(visitors, 0), 4) as visit_to_purchase_rate
    from counts
)

select
    final.*,
    cast(activity_date as date) as partition_date,
    current_timestamp as built_at
from final
where {{ in_partition_range('activity_date') }}
