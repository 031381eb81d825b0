with

source as (
    select * from {{ source('raw', 'purchase') }}
),

deduplicated as (
    {{ deduplicate_events('source') }}
),

final as (
    select
        {{ envelope_columns() }},
        payload.order_id as order_id,
        payload.revenue as revenue,
        payload.item_count as item_count,
        payload.currency as currency,
        payload.payment_method as payment_method
    from deduplicated
)

select * from final
