with

source as (
    select * from {{ source('raw', 'checkout') }}
),

deduplicated as (
    {{ deduplicate_events('source') }}
),

final as (
    select
        {{ envelope_columns() }},
        payload.order_id,
        payload.cart_value,
        payload.item_count,
        payload.currency
    from deduplicated
)

select * from final
