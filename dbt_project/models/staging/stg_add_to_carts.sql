with

source as (
    select * from {{ source('raw', 'add_to_cart') }}
),

deduplicated as (
    {{ deduplicate_events('source') }}
),

final as (
    select
        event_id,
        event_at,
        user_id,
        session_id,
        correlation_id,
        source as event_source,
        payload.product_id as product_id,
        payload.price as price,
        payload.quantity as quantity,
        payload.currency as currency,
        schema_version,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        ingested_at
    from deduplicated
)

select * from final
