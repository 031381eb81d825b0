-- A dead letter counts once for every check it failed (failed_checks are the machine-readable names; the
-- reason text quotes the message, too varied to group by).
with

dead_letters as (
    select
        regexp_replace(kafka_topic, '^events\.', '') as event_type,
        failed_checks,
        reason,
        ingested_at
    from {{ source('raw', 'dead_letter') }}
),

per_check as (
    {{ select_unnested('dead_letters', ['event_type', 'reason', 'ingested_at'], 'failed_checks', 'failed_check') }}
),

final as (
    select
        event_type,
        failed_check,
        count(*) as dead_letters,
        min(ingested_at) as first_ingested_at,
        max(ingested_at) as last_ingested_at,
        min(reason) as example_reason,
        current_timestamp as built_at
    from per_check
    group by 1, 2
)

select * from final
