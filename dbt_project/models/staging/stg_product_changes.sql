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
        payload.product_id,
        payload.name as product_name,
        payload.category,
        payload.price,
        payload.currency,
        payload.is_active
    from deduplicated
)

select * from final
