from ssl_tune.cli import main

raise SystemExit(main())
