{#- Ephemeral, unlike its folder: the macro looks the snapshot up when each run compiles it. -#}
{{ config(materialized='ephemeral') }}

{{ next_unsnapshotted_change(
    ref('stg_user_profile_changes'),
    'snap_users',
    'user_id',
    ['signed_up_at', 'country', 'plan', 'marketing_channel'],
) }}
