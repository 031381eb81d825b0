{#-
    Ordered funnel per UTC day: per user, each step counts only when it happens at or after the user's
    first event of the step before it, the same day. Per category (as of each product view and cart)
    and over the whole shop (category = 'all'). See fct_funnel_daily.yml for the rules.
-#}
with

events as (
    select * from {{ ref('int_events_enriched') }}
    where {{ in_partition_range('event_at') }}  -- every step is within one day
),

category_days as (
    select * from {{ ref('int_category_days') }}
    where {{ in_partition_range('activity_date') }}
),

daily_events as (
    select
        *,
        cast(event_at as date) as activity_date
    from events
),

-- The first two steps are category specific: a product view or cart belongs to its product's
-- category funnel; the 'all' funnel takes every page view and every cart.
browse_events as (
    select
        activity_date,
        category,
        user_id,
        event_type,
        event_at
    from daily_events
    where event_type in ('user_visit', 'add_to_cart') and category is not null
    union all
    select
        activity_date,
        'all' as category,
        user_id,
        event_type,
        event_at
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
    group by 1, 2, 3
),

cart_steps as (
    {{ funnel_step('visit_steps', 'browse_events', 'add_to_cart', same_category=true) }}
),

checkout_steps as (
    {{ funnel_step('cart_steps', 'daily_events', 'checkout') }}
),

purchase_steps as (
    {{ funnel_step('checkout_steps', 'daily_events', 'purchase') }}
),

steps as (
    select
        activity_date,
        category,
        'visit' as step
    from visit_steps
    union all
    select
        activity_date,
        category,
        'cart' as step
    from cart_steps
    union all
    select
        activity_date,
        category,
        'checkout' as step
    from checkout_steps
    union all
    select
        activity_date,
        category,
        'purchase' as step
    from purchase_steps
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
    group by 1, 2
),

-- A step nobody reached on a day is a 0 (every category of the catalog, and 'all').
counts as (
    select
        category_days.activity_date,
        category_days.category,
        coalesce(users_per_step.visitors, 0) as visitors,
        coalesce(users_per_step.cart_users, 0) as cart_users,
        coalesce(users_per_step.checkout_users, 0) as checkout_users,
        coalesce(users_per_step.purchasers, 0) as purchasers
    from category_days
    left join users_per_step
        on category_days.activity_date = users_per_step.activity_date
        and category_days.category = users_per_step.category
),

rates as (
    select
        *,
        round({{ divide('cart_users', 'nullif(visitors, 0)') }}, 4) as visit_to_cart_rate,
        round({{ divide('checkout_users', 'nullif(cart_users, 0)') }}, 4) as cart_to_checkout_rate,
        round({{ divide('purchasers', 'nullif(checkout_users, 0)') }}, 4) as checkout_to_purchase_rate,
        round({{ divide('purchasers', 'nullif(visitors, 0)') }}, 4) as visit_to_purchase_rate
    from counts
),

final as (
    {{ daily_partition_rows('rates', 'activity_date') }}
)

select * from final
