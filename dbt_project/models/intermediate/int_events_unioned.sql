with

user_visits as (
    select * from {{ ref('stg_user_visits') }}
),

add_to_carts as (
    select * from {{ ref('stg_add_to_carts') }}
),

checkouts as (
    select * from {{ ref('stg_checkouts') }}
),

purchases as (
    select * from {{ ref('stg_purchases') }}
),

final as (
    select
        event_id,
        'user_visit' as event_type,
        event_at,
        user_id,
        session_id
    from user_visits
    union all
    select
        event_id,
        'add_to_cart' as event_type,
        event_at,
        user_id,
        session_id
    from add_to_carts
    union all
    select
        event_id,
        'checkout' as event_type,
        event_at,
        user_id,
        session_id
    from checkouts
    union all
    select
        event_id,
        'purchase' as event_type,
        event_at,
        user_id,
        session_id
    from purchases
)

select * from final
