with

source as (
    select * from {{ source('raw', 'add_to_cart') }}
),

deduplicated as (
    {{ deduplicate_events('source') }}
),

final as (
    select
        {{ envelope_columns() }},
        payload.product_id,
        payload.price,
        payload.quantity,
        payload.currency
    from deduplicated
)

select * from final
