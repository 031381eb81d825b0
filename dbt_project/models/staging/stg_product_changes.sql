with

source as (
    select * from {{ source('raw', 'product_changed') }}
),

deduplicated as (
    {{ deduplicate_events('source') }}
),

final as (
    select
        {{ envelope_columns() }},
        event_at as changed_at,
        payload.product_id as product_id,
        payload.name as product_name,
        payload.category as category,
        payload.price as price,
        payload.currency as currency,
        payload.is_active as is_active
    from deduplicated
)

select * from final
