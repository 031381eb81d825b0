with

source as (
    select * from {{ source('raw', 'purchase') }}
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
        payload.revenue as revenue,
        payload.item_count as item_count,
        payload.currency as currency,
        payload.payment_method as payment_method,
        schema_version,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        ingested_at
    from deduplicated
)

select * from final
