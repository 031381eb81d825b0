with

source as (
    select * from {{ source('raw', 'user_visit') }}
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
        payload.page as page,
        payload.referrer as referrer,
        payload.product_id as product_id,
        schema_version,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        ingested_at
    from deduplicated
)

select * from final
