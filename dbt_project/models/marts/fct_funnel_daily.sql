with

events as (
    select * from {{ ref('int_events_unioned') }}
),

users_per_step as (
    select
        cast(event_at as date) as activity_date,
        count(distinct user_id) filter (where event_type = 'user_visit') as visitors,
        count(distinct user_id) filter (where event_type = 'add_to_cart') as cart_users,
        count(distinct user_id) filter (where event_type = 'checkout') as checkout_users,
        count(distinct user_id) filter (where event_type = 'purchase') as purchasers
    from events
    group by 1
),

final as (
    select
        *,
        round(cart_users / nullif(visitors, 0), 4) as visit_to_cart_rate,
        round(checkout_users / nullif(cart_users, 0), 4) as cart_to_checkout_rate,
        round(purchasers / nullif(checkout_users, 0), 4) as checkout_to_purchase_rate
    from users_per_step
)

select * from final
