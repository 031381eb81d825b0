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
        payload.order_id,
        payload.revenue,
        payload.item_count,
        payload.currency,
        payload.payment_method
    from deduplicated
)

select * from final
