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
        payload.product_id as product_id,
        payload.price as price,
        payload.quantity as quantity,
        payload.currency as currency
    from deduplicated
)

select * from final
