with

source as (
    select * from {{ source('raw', 'checkout') }}
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
        payload.order_id as order_id,
        payload.cart_value as cart_value,
        payload.item_count as item_count,
        payload.currency as currency,
        schema_version,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        ingested_at
    from deduplicated
)

select * from final
