with

events as (
    select * from {{ ref('int_events_unioned') }}
),

user_versions as (
    select * from {{ ref('snap_users') }}
),

-- Events whose client sent a session id: the client's session is the session.
client_session_events as (
    select
        session_id,
        session_id as client_session_id,
        user_id,
        event_id,
        event_type,
        event_at
    from events
    where session_id <> ''
),

-- Events without one (null or empty) are sessionized per user: more than 30 minutes without an
-- event of that user (among these events) starts a new session.
unsessioned_events as (
    select
        *,
        lag(event_at) over (partition by user_id order by event_at, event_id) as previous_event_at
    from events
    where coalesce(session_id, '') = ''
),

inactivity_breaks as (
    select
        *,
        previous_event_at is null or event_at - previous_event_at > {{ interval_of(30, 'minutes') }} as is_session_start
    from unsessioned_events
),

-- A range frame (the default) gives events at the same instant the same session number.
numbered_sessions as (
    select
        *,
        {{ count_where_over('is_session_start', 'partition by user_id order by event_at') }} as session_number
    from inactivity_breaks
),

synthetic_session_events as (
    select
        user_id || ':'
        || {{ utc_iso_millis('min(event_at) over (partition by user_id, session_number)') }} as session_id,
        cast(null as varchar) as client_session_id,
        user_id,
        event_id,
        event_type,
        event_at
    from numbered_sessions
),

session_events as (
    select * from client_session_events
    union all
    select * from synthetic_session_events
),

sessions as (
    select
        session_id,
        -- A client session id shared by several users belongs to the user of its first event.
        {{ first_by('user_id', 'event_at, user_id') }} as user_id,
        {{ any_non_null('client_session_id') }} as client_session_id,
        min(event_at) as started_at,
        max(event_at) as ended_at,
        {{ seconds_between('min(event_at)', 'max(event_at)') }} as duration_s,
        count(*) filter (where event_type = 'user_visit') as page_views,
        count(*) as event_count,
        bool_or(event_type = 'purchase') as has_purchase
    from session_events
    group by 1
),

-- The user's country when the session started (the SCD2 version valid then): what row-level
-- security by country filters on.
final as (
    select
        sessions.session_id,
        sessions.user_id,
        user_versions.country,
        sessions.client_session_id,
        sessions.started_at,
        sessions.ended_at,
        sessions.duration_s,
        sessions.page_views,
        sessions.event_count,
        sessions.has_purchase
    from sessions
    left join user_versions
        on sessions.user_id = user_versions.user_id
        and sessions.started_at >= user_versions.dbt_valid_from
        and (sessions.started_at < user_versions.dbt_valid_to or user_versions.dbt_valid_to is null)
)

select * from final
