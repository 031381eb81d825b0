with

user_visits as (
    select event_id, 'user_visit' as event_type, event_at, user_id, session_id from {{ ref('stg_user_visits') }}
),

add_to_carts as (
    select event_id, 'add_to_cart' as event_type, event_at, user_id, session_id from {{ ref('stg_add_to_carts') }}
),

checkouts as (
    select event_id, 'checkout' as event_type, event_at, user_id, session_id from {{ ref('stg_checkouts') }}
),

purchases as (
    select event_id, 'purchase' as event_type, event_at, user_id, session_id from {{ ref('stg_purchases') }}
),

final as (
    select * from user_visits
    union all
    select * from add_to_carts
    union all
    select * from checkouts
    union all
    select * from purchases
)

select * from final
