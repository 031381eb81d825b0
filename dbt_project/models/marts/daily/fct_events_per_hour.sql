with

events as (
    select * from {{ ref('int_events_unioned') }}
    where {{ in_partition_range('event_at') }}
),

events_per_hour as (
    select
        date_trunc('hour', event_at) as event_hour,
        event_type,
        count(*) as event_count
    from events
    group by 1, 2
),

final as (
    {{ daily_partition_rows('events_per_hour', 'event_hour') }}
)

select * from final
