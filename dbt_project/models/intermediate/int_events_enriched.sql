{#- Every activity event with the product and user attributes valid at the event's time (as-of joins). -#}
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

product_versions as (
    select * from {{ ref('snap_products') }}
),

user_versions as (
    select * from {{ ref('snap_users') }}
),

events as (
    select
        event_id,
        'user_visit' as event_type,
        event_at,
        user_id,
        session_id,
        correlation_id,
        product_id,
        cast(null as integer) as quantity,
        cast(null as decimal(12, 2)) as amount
    from user_visits
    union all
    select
        event_id,
        'add_to_cart' as event_type,
        event_at,
        user_id,
        session_id,
        correlation_id,
        product_id,
        quantity,
        price * quantity as amount
    from add_to_carts
    union all
    select
        event_id,
        'checkout' as event_type,
        event_at,
        user_id,
        session_id,
        correlation_id,
        cast(null as varchar) as product_id,
        item_count as quantity,
        cart_value as amount
    from checkouts
    union all
    select
        event_id,
        'purchase' as event_type,
        event_at,
        user_id,
        session_id,
        correlation_id,
        cast(null as varchar) as product_id,
        item_count as quantity,
        revenue as amount
    from purchases
),

final as (
    select
        events.*,
        product_versions.category,
        product_versions.price as product_price,
        user_versions.plan,
        user_versions.country
    from events
    left join product_versions
        on events.product_id = product_versions.product_id
        and events.event_at >= product_versions.dbt_valid_from
        and (events.event_at < product_versions.dbt_valid_to or product_versions.dbt_valid_to is null)
    left join user_versions
        on events.user_id = user_versions.user_id
        and events.event_at >= user_versions.dbt_valid_from
        and (events.event_at < user_versions.dbt_valid_to or user_versions.dbt_valid_to is null)
)

select * from final
